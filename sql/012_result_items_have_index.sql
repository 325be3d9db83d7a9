-- Every result item says which prompt it answers, as the ones taskflows writes do.
--
-- Results taken over from the old system (000, moved into rows by 003) were stored without
-- `index`: their position was the index. The row knows it (`prompt_index`), but readers of
-- `prompt_results` (the page's history, the CLI, API clients) match a result to its prompt
-- by the item's `index`, so without it an adopted execution showed every prompt "not run".
-- Adding the key changes nothing else in the item; the old UI ignores it.
UPDATE execution_results
SET item = item || jsonb_build_object('index', prompt_index)
WHERE jsonb_typeof(item) = 'object' AND NOT item ? 'index';
