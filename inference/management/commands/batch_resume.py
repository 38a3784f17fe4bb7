from django.core.management.base import BaseCommand

from departments.tenancy import all_departments
from inference.extraction.batch_jobs import batch_start
from inference.extraction.models import BatchJob, BatchStatus


class Command(BaseCommand):
    help = (
        "Finish extraction batch jobs left queued or running by a stopped process (files already done are skipped). "
        "Runs them in this process and waits for them; run it from one place only."
    )

    def handle(self, *args, **options):
        with all_departments(reason="resume batch jobs interrupted by a restart, in every department"):
            ids = list(
                BatchJob.objects.filter(status__in=[BatchStatus.QUEUED, BatchStatus.RUNNING]).values_list(
                    "pk", flat=True
                )
            )
        threads = [batch_start(job_id) for job_id in ids]
        self.stdout.write(f"Resuming {len(threads)} batch job(s)...")
        for thread in threads:
            thread.join()
        self.stdout.write("Done.")
