"""The narrative behind ./demo (uses the integration harness)."""
import datetime
import hashlib
import shutil
import sys
import time

from harness import FakeGateway, PrivateDovecot, make_workdir, wait_until


def say(text=""):
    print(text, flush=True)


def hashed(token):
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def clock(ms):
    return datetime.datetime.fromtimestamp(ms / 1000).strftime("%H:%M:%S.%f")[:-3]


def show_requests(reqs, t0=None):
    t0 = t0 if t0 is not None else (reqs[0]["time_ms"] if reqs else 0)
    for r in reqs:
        say(f"     {clock(r['time_ms'])} (+{(r['time_ms'] - t0) / 1000:5.2f} s)  "
            f"POST /notify  token {hashed(r['token'])}  HTTP/{r['http_version']}  "
            f"connection #{r['connection']}  -> {r['status']}")


def main():
    workdir = make_workdir("cmn-demo-")
    try:
        with FakeGateway(workdir) as gw, \
                PrivateDovecot(gateway=gw, users=("cmntest1",), workdir=workdir) as dc:
            user = "cmntest1"
            addr = dc.address(user)
            say(f"== A private Dovecot is running in {dc.dir}")
            say(f"   IMAP on 127.0.0.1:{dc.imap_port}, LMTP on 127.0.0.1:{dc.lmtp_port}, "
                f"sender service pid {dc.sender_pid()}")
            say(f"   the push gateway (a local fake of notifications.delta.chat) is {gw.url}")
            say()

            token = "openpgp:demo-device-" + hashed(str(time.time()))
            say(f"== 1. {addr} registers a device token over IMAP")
            with dc.imap(user) as imap:
                caps = imap.capability()[1][0].decode()
                say(f"   CAPABILITY has XDELTAPUSH: {'XDELTAPUSH' in caps.split()}")
                imap.set_token(token)
                say(f'   C: SETMETADATA INBOX (/private/devicetoken "{token}")  -> OK')
                say(f"   C: GETMETADATA INBOX /private/devicetoken  -> {imap.get_tokens()}")
            say(f"   stored in {dc.token_file(user)}")
            say()

            say(f"== 2. a mail for {addr} arrives over LMTP")
            results = dc.lmtp_deliver(user, subject="Hello from the demo")
            for rcpt, (code, text) in results.items():
                say(f"   LMTP: {rcpt}: {code} {text}")
            gw.wait_answered([token])
            say("   the gateway saw:")
            show_requests(gw.requests_for(token))
            say(f"   (tokens are secrets: logs and this demo show them as a hash, {hashed(token)})")
            say()

            say("== 3. the gateway fails twice (token scripted fail2x-...), then accepts")
            flaky = "fail2x-demo-" + hashed(token)
            with dc.imap(user) as imap:
                imap.set_token(flaky)
            dc.lmtp_deliver(user, subject="Second mail")
            say("   waiting for the retries (backoff base 2 s: 2 s, then 4 s) ...")
            gw.wait_answered([flaky], timeout=30)
            show_requests(gw.requests_for(flaky))
            say()

            say("== 4. the gateway answers 410 Gone: the token is removed from the user's store")
            gone = "s410-demo-" + hashed(token)
            with dc.imap(user) as imap:
                imap.set_token(gone)
                say(f"   GETMETADATA before: {[hashed(t) for t in imap.get_tokens()]} (hashes)")
            mark = len(gw.requests())
            dc.lmtp_deliver(user, subject="Third mail")
            gw.wait_answered([gone], status=410)
            wait_until(lambda: gone not in tokens(dc, user), 20, "the token's removal")
            show_requests(gw.requests()[mark:])
            say(f"   GETMETADATA after:  {[hashed(t) for t in tokens(dc, user)]} "
                f"({hashed(gone)} is gone, the other devices stay)")
            say()

            say("== 5. what Dovecot logged about it (grep chatmail):")
            lines = [l for l in dc.log().splitlines() if "chatmail" in l.lower()]
            for line in lines[-15:]:
                say("   " + line[:220])
            say()
            say("== done: stopping Dovecot and the gateway, removing " + str(workdir))
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def tokens(dc, user):
    with dc.imap(user) as imap:
        return imap.get_tokens()


if __name__ == "__main__":
    sys.exit(main())
