"""The numbered schema migrations (`NNN_*.sql`), shipped inside the package so that an
installed taskflows creates its tables too; `flows.database` applies them."""
