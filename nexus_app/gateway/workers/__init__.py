"""Dispatch to workers: the coordinator, each job's guard and mailbox, worker health and admission,
the network counters. Framework-free: the socket endpoint lives in `api/worker_socket.py`."""
