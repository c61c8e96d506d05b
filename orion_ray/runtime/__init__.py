"""Runtime adapters: the only code that talks to Ray.

Deliberately free of imports: a worker process imports ``orion_ray.runtime.task_runner`` (and a
job's driver ``job_runner``) for every run, and those use the standard library only; importing
this package must not load Ray, httpx or pydantic for them.
"""
