"""``manage.py rotate_memory_keys [--batch-size N] [--dry-run]``: re-encrypt every encrypted text
column (every model field that is a :class:`core.fields.EncryptedTextField`, so also the
:class:`core.fields.SecretTextField` columns: model connections' API keys and extra headers) with
the first key of ``ARBOR_MEMORY_ENCRYPTION_KEYS``; plaintext rows written before encryption was
turned on, and secrets written under the key derived from ``SECRET_KEY``, get encrypted with it too.
Safe to interrupt and run again (each batch is one transaction)."""

from __future__ import annotations

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from core.fields import PREFIX, DecryptionError, EncryptedTextField, configured_keys


def encrypted_fields() -> list[tuple[type, EncryptedTextField]]:
    """``(model, field)`` of every EncryptedTextField (SecretTextField included) in the project."""
    return [(model, f) for model in apps.get_models() for f in model._meta.concrete_fields
            if isinstance(f, EncryptedTextField)]


class Command(BaseCommand):
    help = ("Re-encrypt message text and other encrypted fields (connection API keys too) with the first "
            "ARBOR_MEMORY_ENCRYPTION_KEYS key.")

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--dry-run", action="store_true", help="Count the rows; write nothing.")

    def handle(self, *args, batch_size=500, dry_run=False, **options):
        if not configured_keys():
            raise CommandError("ARBOR_MEMORY_ENCRYPTION_KEYS is not set: there is no key to encrypt with.")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        for model, field in encrypted_fields():
            name = field.name
            total = 0
            last_pk = None
            while True:
                qs = model.objects.order_by("pk")
                if last_pk is not None:
                    qs = qs.filter(pk__gt=last_pk)
                pks = list(qs.values_list("pk", flat=True)[:batch_size])
                if not pks:
                    break
                last_pk = pks[-1]
                if dry_run:
                    total += len(pks)
                    continue
                with transaction.atomic():
                    try:  # loading decrypts with any key (from_db_value); field.rotate() encrypts with the first
                        rows = list(model.objects.select_for_update().filter(pk__in=pks).only("pk", name))
                    except DecryptionError as exc:
                        raise CommandError(f"{model._meta.label} rows {pks[0]}–{pks[-1]}: {exc}") from None
                    for row in rows:
                        setattr(row, name, field.rotate(getattr(row, name)))
                    model.objects.bulk_update(rows, [name])
                total += len(pks)
            label = f"{model._meta.label}.{name}"
            self.stdout.write(f"{label}: {total} rows {'would be ' if dry_run else ''}re-encrypted (prefix {PREFIX}).")
