"""A worker that sends mail with aiosmtplib, upgrading the connection with STARTTLS.

``POST /send`` with a JSON body ``{"to": "...", "subject": "...", "text": "..."}`` sends one
message and answers ``202`` with the server's reply. aiosmtplib connects in plaintext, reads the
greeting, says EHLO and STARTTLS, then upgrades the same connection with ``loop.start_tls``: on
the gated event loop the runtime serves with, the connection passes the egress policy, counts
against the request's socket limit (the upgrade keeps its slot) and is closed when the request
ends.

It needs an SMTP server that offers STARTTLS. Configure it with ``[vars]`` or ``--var``:
``SMTP_HOST`` (default ``127.0.0.1``), ``SMTP_PORT`` (default ``587``, the submission port; port
25 is refused by the egress policy unless allowed), ``SMTP_FROM`` (default
``worker@localhost``), and ``SMTP_CA_FILE``, a PEM file of the CA to trust instead of the system
store (for a local server with its own certificate); ``SMTP_USER`` and ``SMTP_PASSWORD`` log in
when both are set (make the password a secret). Run it::

    tcpworkers dev examples/smtp_starttls_worker.py --var SMTP_PORT=1587
    curl -X POST http://127.0.0.1:8787/send \\
        -d '{"to": "ops@example.test", "subject": "hi", "text": "sent from a worker"}'
"""

from __future__ import annotations

import ssl
from email.message import EmailMessage

import aiosmtplib

from tcpworkers import Request, Response
from tcpworkers.runtime import Env, ExecutionContext

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 587


def _tls_context(env: Env) -> ssl.SSLContext:
    ca_file = env.get("SMTP_CA_FILE")
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


async def fetch(request: Request, env: Env, ctx: ExecutionContext) -> Response:
    """Send the message described by the JSON body of ``POST /send``."""
    if request.path != "/send" or request.method != "POST":
        return Response("usage: POST /send with {to, subject, text}", status=404)
    try:
        data = await request.json()
        message = EmailMessage()
        message["From"] = str(env.get("SMTP_FROM", "worker@localhost"))
        message["To"] = str(data["to"])
        message["Subject"] = str(data.get("subject", ""))
        message.set_content(str(data.get("text", "")))
    except (ValueError, KeyError, TypeError) as exc:
        return Response(f"bad message ({exc}); send JSON with to, subject, text", status=400)
    user, password = env.get("SMTP_USER"), env.get("SMTP_PASSWORD")
    try:
        errors, reply = await aiosmtplib.send(
            message,
            hostname=str(env.get("SMTP_HOST", DEFAULT_HOST)),
            port=int(env.get("SMTP_PORT", DEFAULT_PORT)),
            start_tls=True,  # STARTTLS is required: never send the message in plaintext
            tls_context=_tls_context(env),
            username=str(user) if user and password else None,
            password=str(password) if user and password else None,
            timeout=10,
        )
    except aiosmtplib.SMTPException as exc:
        return Response(f"the SMTP server refused the message: {exc}", status=502)
    return Response.json({"accepted": reply, "refused": list(errors)}, status=202)
