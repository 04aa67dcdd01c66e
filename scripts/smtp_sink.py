#!/usr/bin/env python3
"""An SMTP server that keeps what it receives: the mail tests' sink.

    smtp_sink.py PORT OUT_FILE

Listens on 127.0.0.1:PORT (aiosmtpd, Debian's python3-aiosmtpd) and appends
every message it accepts to OUT_FILE as one JSON line: "from" and "to" (the
envelope), "data" (the message as sent: headers and MIME body), and, decoded
by Python's email package (so readers need no MIME or quoted-printable
code), "subject", "message_id", "text" and "html". Prints "ready" once
it accepts connections, and runs until killed. Folio's Rust tests
(server/tests/support/smtp.rs) and browser tests (end2end/tests/smtp.ts)
start it on a spare port and read the file.
"""

import email
import email.policy
import json
import sys
import threading

from aiosmtpd.controller import Controller


def part(message, subtype):
    body = message.get_body(preferencelist=(subtype,))
    return body.get_content() if body is not None else None


class Keep:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        line = json.dumps({
            "from": envelope.mail_from,
            "to": list(envelope.rcpt_tos),
            "data": envelope.content.decode("utf-8", "replace"),
            "subject": str(parsed.get("Subject", "")),
            "message_id": str(parsed.get("Message-ID", "")),
            "text": part(parsed, "plain"),
            "html": part(parsed, "html"),
        })
        # One write per message, flushed before the 250: whoever reads the
        # file after the client saw "accepted" finds the whole line.
        with self.lock, open(self.path, "a", encoding="utf-8") as out:
            out.write(line + "\n")
            out.flush()
        return "250 Message accepted for delivery"


def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    open(path, "a").close()
    controller = Controller(Keep(path), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        threading.Event().wait()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
