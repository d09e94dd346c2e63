"""What the API and the worker share: settings, the database and its tables, the data dir's layout, the job
queue's task names, and every state change of jobs and datasets. Imports neither `app` nor `worker`."""
