"""Secrets out of anything govloop prints, logs, stores or hashes.

:func:`redact_url` is the one redaction govloop applies to service addresses
and to text that may quote them (error messages): it masks

* the password of a URL's userinfo (``redis://:pw@h:6379/0``,
  ``postgresql://u:pw@h1,h2/db``), keeping the user name;
* the value of every ``key=value`` whose key names a secret (:func:`is_secret_key`),
  in a query string (``?password=``, ``&sslpassword=``, ``;token=``), in a
  libpq DSN (``host=h password=pw``) or in Kafka client settings
  (``sasl.password=pw,security.protocol=SASL_SSL``);
* each of those in every element of a comma-separated list (Kafka bootstrap
  servers) and in every URL inside a longer message.

It works on text rather than on a parsed URL on purpose: a URL that does not
parse (a mistyped port, two hosts) must be masked too, and the result must
leave everything that is not a secret exactly as it was, so an operator can
still read which host and database were meant.  No library covers all these
forms (SQLAlchemy's ``URL.render_as_string`` masks only its own URLs'
passwords, not query parameters).

:func:`secrets_in` lists the secret values themselves, for
:func:`scrub`, which masks them wherever a driver quotes them outside a URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

__all__ = ["MASK", "SECRET_KEYS", "is_secret_key", "redact_url", "scrub", "secrets_in"]

#: What a secret is replaced with.
MASK = "***"

#: Setting and query-parameter names whose value is a secret (compared after
#: lower-casing and turning ``-`` and ``.`` into ``_``).
SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "secret",
        "token",
        "api_key",
        "apikey",
        "access_key",
        "access_token",
        "auth",
        "auth_token",
        "credentials",
        "client_secret",
        "private_key",
        "sslkey",
        "sslpassword",
        "ssl_key_password",
        "ssl_keystore_password",
        "ssl_truststore_password",
        "sasl_password",
        "sasl_jaas_config",
        "sasl_oauthbearer_config",
    }
)

#: Name endings that make any key a secret one (``db_password``, ``x_api_token``).
_SECRET_ENDINGS = ("password", "passwd", "secret", "token", "api_key", "apikey")

# scheme://user:password@ -- the password runs to the last '@' before the path, so a raw
# '@' inside it is masked too; the user name stays readable
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s,]*):(?P<secret>[^/?#\s]*)@")
# key=value after a start, '?', '&', ';', ',' or whitespace; a quoted value may hold spaces
_KEY_VALUE = re.compile(
    r"(?P<head>(?:^|(?<=[?&;,\s]))(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*)"
    r"(?P<secret>'[^']*'|\"[^\"]*\"|[^&#;,\s]*)"
)


def is_secret_key(name: str) -> bool:
    """Whether a setting or parameter called ``name`` holds a secret.

    >>> [is_secret_key(k) for k in ("password", "sslpassword", "sasl.password", "DB_PASSWORD")]
    [True, True, True, True]
    >>> [is_secret_key(k) for k in ("user", "host", "sslmode", "options", "passage")]
    [False, False, False, False, False]
    """
    key = name.lower().replace("-", "_").replace(".", "_")
    return key in SECRET_KEYS or key.endswith(_SECRET_ENDINGS)


def redact_url(text: str) -> str:
    """``text`` with every secret of every URL form in it replaced by :data:`MASK`.

    >>> redact_url("postgresql://gov:s3cret@db:5432/govloop")
    'postgresql://gov:***@db:5432/govloop'
    >>> redact_url("redis://:pw@127.0.0.1:6379/0"), redact_url("sqlite:///x.db")
    ('redis://:***@127.0.0.1:6379/0', 'sqlite:///x.db')
    >>> redact_url("postgresql://u@h/db?sslmode=require&password=pw&sslpassword=k")
    'postgresql://u@h/db?sslmode=require&password=***&sslpassword=***'
    >>> redact_url("https://h/v1?api_key=abc&page=2;token=t")
    'https://h/v1?api_key=***&page=2;token=***'
    >>> redact_url("SASL_SSL://u:p@k1:9092,SASL_SSL://u:q@k2:9092")
    'SASL_SSL://u:***@k1:9092,SASL_SSL://u:***@k2:9092'
    >>> redact_url("k1:9092,k2:9092,sasl.username=gov,sasl.password=pw")
    'k1:9092,k2:9092,sasl.username=gov,sasl.password=***'
    >>> redact_url("host=db user=gov password='two words' dbname=x")
    'host=db user=gov password=*** dbname=x'
    >>> redact_url("database postgresql://u:p@w@h/db: connection refused")
    'database postgresql://u:***@h/db: connection refused'
    >>> redact_url("postgresql://u:pw@h1:5432,h2:5432/db")
    'postgresql://u:***@h1:5432,h2:5432/db'
    """
    masked = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _KEY_VALUE.sub(
        lambda m: m["head"] + MASK if is_secret_key(m["key"]) else m.group(0), masked
    )


def secrets_in(text: str) -> list[str]:
    """The secret values :func:`redact_url` would mask in ``text``, raw and percent-decoded.

    >>> secrets_in("postgresql://u:p%40ss@h/db?password=x&user=u")
    ['p%40ss', 'p@ss', 'x']
    >>> secrets_in("sqlite:///govloop.db")
    []
    """
    found: list[str] = []
    for pattern in (_USERINFO, _KEY_VALUE):
        for m in pattern.finditer(text):
            if pattern is _KEY_VALUE and not is_secret_key(m["key"]):
                continue
            value = m["secret"].strip("'\"")
            for v in (value, unquote(value)):
                if v and v not in found:
                    found.append(v)
    return found


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with its URLs redacted and every one of ``secrets`` masked wherever it occurs.

    For messages from drivers, which may quote a password without its URL.

    >>> scrub("auth failed for 'hunter2' at redis://:hunter2@h/0", ["hunter2"])
    "auth failed for '***' at redis://:***@h/0"
    """
    out = redact_url(text)
    for secret in sorted(set(secrets), key=len, reverse=True):  # longest first: no partial masks
        out = out.replace(secret, MASK)
    return out
