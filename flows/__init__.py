"""The task-flow runtime: settings, database access, the execution store, the agent client
and the Prefect flow that runs a task flow prompt by prompt."""
