"""Encryption at rest: message text is ciphertext in the database when keys are set, plaintext to
Python; keys rotate with rotate_memory_keys; search degrades with a message, not an error page."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from conversations.models import Message
from core.fields import PREFIX, DecryptionError
from search.memory_store import DatabaseMemoryStore
from tests.support.factories import RunFactory, SessionFactory

KEY1, KEY2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def raw_content(pk) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT content FROM {Message._meta.db_table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_off_by_default_text_is_stored_as_is(user, settings):
    """Without keys the column holds the plain text."""
    settings.ARBOR_MEMORY_ENCRYPTION_KEYS = []
    run = RunFactory(session=SessionFactory(owner=user), turn=("plain question", "plain answer"))
    assert raw_content(run.messages.get(position=0).pk) == "plain question"


@pytest.mark.django_db
def test_with_keys_the_database_holds_ciphertext_and_python_sees_text(user, settings):
    """With keys, every write path stores enc:v1:<Fernet token>; reads (models, values, path reads) decrypt."""
    settings.ARBOR_MEMORY_ENCRYPTION_KEYS = [KEY1]
    run = RunFactory(session=SessionFactory(owner=user), turn=("secret question", "secret answer"))
    message = run.messages.get(position=0)
    stored = raw_content(message.pk)
    assert stored.startswith(PREFIX) and "secret" not in stored
    assert Fernet(KEY1.encode()).decrypt(stored[len(PREFIX):].encode()) == b"secret question"
    assert Message.objects.get(pk=message.pk).content == "secret question"
    assert list(Message.objects.filter(pk=message.pk).values_list("content", flat=True)) == ["secret question"]
    Message.objects.filter(pk=message.pk).update(content="updated")
    assert raw_content(message.pk).startswith(PREFIX) and Message.objects.get(pk=message.pk).content == "updated"
    store = DatabaseMemoryStore("default", run=run)
    assert [m.content for m in store.get_history()] == ["updated", "secret answer"]
    assert [m.content for m in store.search("answer", 1)] == ["secret answer"]  # BM25 in Python on decrypted text


@pytest.mark.django_db
def test_rotation_re_encrypts_with_the_new_key(user, settings):
    """New key first, old key after: rotate_memory_keys re-encrypts every row (plaintext ones too),
    after which the old key can go."""
    settings.ARBOR_MEMORY_ENCRYPTION_KEYS = []
    legacy = RunFactory(session=SessionFactory(owner=user), turn=("written before encryption", None))
    settings.ARBOR_MEMORY_ENCRYPTION_KEYS = [KEY1]
    run = RunFactory(session=SessionFactory(owner=user), turn=("under key one", "reply"))
    old_token = raw_content(run.messages.get(position=0).pk)
    settings.ARBOR_MEMORY_ENCRYPTION_KEYS = [KEY2, KEY1]
    out = io.StringIO()
    call_command("rotate_memory_keys", "--batch-size", "2", stdout=out)
    assert "conversations.Message.content: 3 rows re-encrypted" in out.getvalue()
    settings.ARBOR_MEMORY_ENCRYPTION_KEYS = [KEY2]  # the old key is gone
    new_token = raw_content(run.messages.get(position=0).pk)
    assert new_token != old_token and new_token.startswith(PREFIX)
    assert run.messages.get(position=0).content == "under key one"
    assert legacy.messages.get().content == "written before encryption"
    assert raw_content(legacy.messages.get().pk).startswith(PREFIX)


@pytest.mark.django_db
def test_a_missing_key_is_a_clear_error(user, settings):
    """Ciphertext that no configured key opens raises DecryptionError naming the setting; the
    command refuses to run without keys."""
    settings.ARBOR_MEMORY_ENCRYPTION_KEYS = [KEY1]
    run = RunFactory(session=SessionFactory(owner=user), turn=("locked", None))
    settings.ARBOR_MEMORY_ENCRYPTION_KEYS = [KEY2]
    with pytest.raises(DecryptionError, match="ARBOR_MEMORY_ENCRYPTION_KEYS"):
        run.messages.get().content  # noqa: B018
    settings.ARBOR_MEMORY_ENCRYPTION_KEYS = []
    with pytest.raises(CommandError, match="not set"):
        call_command("rotate_memory_keys")


@pytest.mark.django_db
def test_keyword_search_page_degrades_with_a_message(client, user, settings):
    """With encryption on, keyword search answers 200 with a sentence saying why it cannot run."""
    settings.ARBOR_MEMORY_ENCRYPTION_KEYS = [KEY1]
    RunFactory(session=SessionFactory(owner=user), turn=("find the llama", "here"))
    client.force_login(user)
    response = client.get(reverse("memory:search"), {"q": "llama", "mode": "keyword"})
    assert response.status_code == 200
    assert "Keyword search is unavailable while encryption at rest is on" in response.content.decode()
