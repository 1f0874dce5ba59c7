"""The administrator's first login: the generated password kept in a file under
``var/`` until it is changed, and the banner ``make run`` prints once the web server answers.

The file, ``<ARBOR_VAR_DIR>/admin-password`` (mode 0600, readable by its owner only)::

    # Arbor's generated administrator password. Deleted once the password is changed.
    user: admin
    password: <the password>

It is written by ``manage.py ensure_admin`` when it generates a password, and deleted as soon as
that user's password changes (``manage.py changepassword``, the admin site, the API of Django's
auth): :func:`forget_changed_password` runs on every save of a user, and the banner checks again.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password

HEADER = "# Arbor's generated administrator password. Deleted once the password is changed."


def password_file() -> Path:
    return Path(settings.VAR_DIR) / "admin-password"


def save_generated_password(username: str, password: str) -> Path:
    """Write the file (mode 0600, also when it existed with other modes); returns its path."""
    path = password_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(f"{HEADER}\nuser: {username}\npassword: {password}\n")
    return path


def _read() -> tuple[str, str] | None:
    """``(username, password)`` from the file, or None when there is no readable file."""
    try:
        text = password_file().read_text(encoding="utf-8")
    except OSError:
        return None
    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line and not line.startswith("#"))
    if not fields.get("user") or not fields.get("password"):
        return None
    return fields["user"], fields["password"]


def generated_password(user) -> str | None:
    """The generated password of ``user`` if the file holds it and it is still their password;
    a file whose password no longer matches is deleted (None)."""
    saved = _read()
    if saved is None or saved[0] != user.get_username():
        return None
    if check_password(saved[1], user.password):
        return saved[1]
    password_file().unlink(missing_ok=True)
    return None


def forget_changed_password(sender, instance, update_fields=None, **kwargs) -> None:
    """``post_save`` receiver of the user model: delete the file once its user's password changed.

    Saves that do not touch the password (``last_login`` on every login) are skipped without
    hashing; otherwise the file is checked with :func:`django.contrib.auth.hashers.check_password`
    (which never rewrites the stored hash).
    """
    if update_fields is not None and "password" not in update_fields:
        return
    if password_file().exists():
        generated_password(instance)


def administrator():
    """The administrator the banner names: the user of the password file, else ``ARBOR_ADMIN_USER``
    (default ``admin``) when it is a superuser, else the first superuser; None when there is none."""
    users = get_user_model().objects.filter(is_superuser=True, is_active=True)
    saved = _read()
    names = [saved[0]] if saved else []
    names.append(os.environ.get("ARBOR_ADMIN_USER", "admin"))  # the same variable ensure_admin reads
    for name in names:
        user = users.filter(**{get_user_model().USERNAME_FIELD: name}).first()
        if user is not None:
            return user
    return users.order_by("pk").first()


def banner(url: str) -> str:
    """The lines shown once Arbor answers at ``url``: where, who, and the password or how to set one."""
    user = administrator()
    rule = "=" * 72
    lines = [rule, f"  Arbor is ready: {url}"]
    if user is None:
        lines.append("  No administrator yet: create one with  .venv/bin/python manage.py createsuperuser")
    else:
        name = user.get_username()
        password = generated_password(user)
        lines.append(f"  Administrator:  {name}")
        if password is not None:
            lines.append(f"  Password:       {password}")
            lines.append(f"                  (generated; kept in {password_file()} until you change it)")
        else:
            lines.append("  Password:       the one you set; to set a new one:")
            lines.append(f"                  .venv/bin/python manage.py changepassword {name}")
    lines.append(rule)
    return "\n".join(lines)
