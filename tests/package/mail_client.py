#!/usr/bin/python3
"""What the package test does as a mail client and as the gateway's operator.

  mail_client.py register HOST USER PASSWORD TOKEN   IMAP: check capabilities, SETMETADATA
  mail_client.py deliver LMTP_SOCKET RCPT            LMTP: deliver one message
  mail_client.py gateway URL mode '{"status": 500}'  fake gateway: set its mode
  mail_client.py gateway URL reset                   fake gateway: forget requests
  mail_client.py wait-request URL TOKEN STATUS SECS  wait until the gateway answered
                                                     STATUS to a request for TOKEN

Exit status 0 on success; otherwise a message on stderr says what was expected.
"""
import imaplib
import json
import smtplib
import ssl
import sys
import time
import urllib.request

# imaplib knows no METADATA commands.
imaplib.Commands.setdefault("SETMETADATA", ("AUTH", "SELECTED"))
imaplib.Commands.setdefault("GETMETADATA", ("AUTH", "SELECTED"))


def fail(message):
    print(f"mail_client: {message}", file=sys.stderr)
    sys.exit(1)


def register(host, user, password, token):
    with imaplib.IMAP4(host, 143) as imap:
        imap.login(user, password)
        # Pre-login capabilities lack METADATA: ask again.
        typ, data = imap.capability()
        capabilities = set(data[0].decode().upper().split()) if typ == "OK" else set()
        for wanted in ("METADATA", "XDELTAPUSH"):
            if wanted not in capabilities:
                fail(f"CAPABILITY lacks {wanted}: {sorted(capabilities)}")
        status, data = imap._simple_command(
            "SETMETADATA", "INBOX", f'(/private/devicetoken "{token}")')
        if status != "OK":
            fail(f"SETMETADATA answered {status} {data}")
        typ, data = imap._simple_command("GETMETADATA", "INBOX", "/private/devicetoken")
        answer = imap._untagged_response(typ, data, "METADATA")[1]
        if typ != "OK" or not any(token.encode() in (line or b"") for line in answer):
            fail(f"GETMETADATA does not return the token: {typ} {answer}")
        imap.logout()


def deliver(socket_path, rcpt):
    message = (f"From: someone-else@example.org\r\nTo: {rcpt}\r\n"
               f"Subject: package test {time.time()}\r\n\r\nhello\r\n")
    with smtplib.LMTP(socket_path) as lmtp:
        lmtp.ehlo_or_helo_if_needed()
        refused = lmtp.sendmail("someone-else@example.org", [rcpt], message)
        if refused:
            fail(f"LMTP refused {refused}")


def gateway_call(base_url, path, body=None):
    context = ssl.create_default_context(cafile=CA_FILE) if CA_FILE else None
    request = urllib.request.Request(
        base_url + path, data=None if body is None else body.encode(),
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:
        return json.loads(answer.read() or b"null")


def wait_request(base_url, token, status, seconds):
    deadline = time.monotonic() + float(seconds)
    seen = []
    while time.monotonic() < deadline:
        seen = gateway_call(base_url, "/control/requests")
        if any(r["token"] == token and r["status"] == int(status) for r in seen):
            return
        time.sleep(0.2)
    fail(f"no request for the token answered {status} within {seconds}s; "
         f"the gateway saw: {[(r['token'][:12], r['status']) for r in seen]}")


CA_FILE = None


def main(argv):
    global CA_FILE
    if len(argv) > 1 and argv[1].startswith("--ca="):
        CA_FILE = argv[1][len("--ca="):]
        argv = argv[:1] + argv[2:]
    command, args = argv[1], argv[2:]
    if command == "register":
        register(*args)
    elif command == "deliver":
        deliver(*args)
    elif command == "gateway" and args[1] == "mode":
        gateway_call(args[0], "/control/mode", args[2])
    elif command == "gateway" and args[1] == "reset":
        gateway_call(args[0], "/control/reset", "{}")
    elif command == "wait-request":
        wait_request(*args)
    else:
        fail(f"unknown command {argv[1:]}")


if __name__ == "__main__":
    main(sys.argv)
