"""Celery tasks: thin wrappers that load by id and call a service; reliability lives in the decorators."""

from celery import shared_task

from . import services
from .llm import TransientModelError


@shared_task(
    name="conversations.execute_run",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(TransientModelError,),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=3,
    soft_time_limit=900,
    time_limit=960,
)
def execute_run(self, run_id: str) -> None:
    services.run_execute(run_id=run_id, final_attempt=self.request.retries >= self.max_retries)


@shared_task(name="conversations.reap_stale_runs", acks_late=True, ignore_result=True)
def reap_stale_runs() -> dict:
    return services.reap_stale_runs()


@shared_task(name="conversations.prune_run_events", acks_late=True, ignore_result=True)
def prune_run_events() -> int:
    from django.conf import settings

    from .streams import get_stream

    return get_stream().prune(settings.ARBOR_STREAM_RETENTION_SECONDS)
