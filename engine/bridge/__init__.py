"""The only place that starts threads or loops: the sync bridge, executors and task runners."""
