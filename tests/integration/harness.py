"""A private Dovecot with the freshly built plugin, and the fake gateway.

Python 3 standard library only; run with Debian's /usr/bin/python3 as root.
Everything lives in a temporary directory and on free ports of 127.0.0.1,
so a system Dovecot (or another test run) is never touched.

    with FakeGateway(workdir) as gw, PrivateDovecot(gateway=gw) as dc:
        with dc.imap("cmntest1") as imap:
            imap.set_token("tok-1")
        dc.lmtp_deliver("cmntest1")
        gw.wait_for_requests(lambda rs: len(rs) == 1, what="the push")

The build directory is $CMN_BUILD_DIR (default <repo>/build).
For sanitizer runs (tests/tooling/asan-integration.sh): the file named by
$CMN_DOVECOT_EXTRA_CONF is appended to every private Dovecot's config, and
$CMN_DOVECOT_ENV ("NAME=value ...") is added to the environment of the
Dovecot programs the harness starts itself (dovecot, doveadm, dovecot-lda).
"""

import contextlib
import imaplib
import json
import os
import pwd
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import unittest
import urllib.request
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("CMN_BUILD_DIR", REPO / "build")).resolve()
PLUGIN_SO = BUILD / "plugin/dovecot/lib95_chatmail_notify_plugin.so"
SENDER_BIN = BUILD / "plugin/service/chatmail-notify-sender"
DOVEADM_PLUGIN_SO = BUILD / "plugin/doveadm/lib95_doveadm_chatmail_notify_plugin.so"
SPOOL_TOOL = BUILD / "tests/cmn-spool-tool"
GATEWAY_JS = REPO / "tests/gateway/fake-gateway.js"
MAKE_CERT = REPO / "tests/gateway/make-cert.sh"
DOVECOT_MODULES = Path("/usr/lib/dovecot/modules")
DOVECOT_LDA = "/usr/lib/dovecot/dovecot-lda"
DOMAIN = "example.org"
PASSWORD = "secret"
# Upper bound for everything that should happen "at once" (a delivery, a push).
QUICK = 20.0
EXTRA_CONF = os.environ.get("CMN_DOVECOT_EXTRA_CONF")
DOVECOT_ENV = dict(kv.split("=", 1) for kv in os.environ.get("CMN_DOVECOT_ENV", "").split())


def dovecot_env():
    """The environment for a Dovecot program the harness runs itself."""
    return {**os.environ, **DOVECOT_ENV} if DOVECOT_ENV else None


def wait_until(predicate, timeout, what, interval=0.05):
    """Polls predicate() until it returns something truthy, which is returned.
    Raises AssertionError naming `what` when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def make_workdir(prefix):
    """A temporary directory that mail users (other uids) may enter."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def built(*paths):
    missing = [str(p) for p in paths if not Path(p).exists()]
    return "not built: " + ", ".join(missing) if missing else None


def skip_unless_built(*paths):
    """unittest decorator: skip (with the reason) until the parts exist."""
    reason = built(*paths)
    return unittest.skip(reason) if reason else (lambda f: f)


def ensure_system_user(name, uid_hint=None):
    """Creates a no-login system user once; returns its passwd entry."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    cmd = ["useradd", "-M", "-U", "-d", "/nonexistent", "-s", "/usr/sbin/nologin"]
    if uid_hint is not None:
        cmd += ["-u", str(uid_hint)]
    subprocess.run(cmd + [name], check=True, stdout=subprocess.DEVNULL)
    return pwd.getpwnam(name)


def address(user):
    return user if "@" in user else f"{user}@{DOMAIN}"


def make_message(rcpt, sender="alice@example.net", subject="hello", body="hi\n"):
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = rcpt
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.net")
    msg.set_content(body)
    return msg


class FakeGateway:
    """tests/gateway/fake-gateway.js over TLS on a free port (spec:
    tests/gateway/README.md). Its CA is in `ca_file`; `url` is the notify URL."""

    def __init__(self, workdir, http1_only=False, delay_ms=0):
        self.dir = Path(workdir) / "gateway"
        self.http1_only = http1_only
        self.delay_ms = delay_ms
        self.proc = None
        self.port = None

    @property
    def ca_file(self):
        return self.dir / "ca.pem"

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}/notify"

    def start(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        if not self.ca_file.exists():
            subprocess.run(["sh", str(MAKE_CERT), str(self.dir)], check=True)
        self.ca_file.chmod(0o644)
        port_file = self.dir / "port"
        with contextlib.suppress(FileNotFoundError):
            port_file.unlink()
        # A restart (stop, start) listens on the same port: the URL stays valid.
        cmd = ["node", str(GATEWAY_JS), "--tls", "--host", "127.0.0.1",
               "--port", str(self.port or 0),
               "--cert", str(self.dir / "cert.pem"), "--key", str(self.dir / "key.pem"),
               "--port-file", str(port_file), "--log", str(self.dir / "requests.jsonl")]
        if self.http1_only:
            cmd.append("--http1-only")
        if self.delay_ms:
            cmd += ["--delay-ms", str(self.delay_ms)]
        with open(self.dir / "gateway.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError("fake gateway exited: "
                                     + (self.dir / "gateway.log").read_text(errors="replace"))
            text = port_file.read_text().strip() if port_file.exists() else ""
            return text.isdigit() and int(text)
        self.port = wait_until(listening, QUICK, "the fake gateway's port file")
        self._ssl = ssl.create_default_context(cafile=str(self.ca_file))
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _control(self, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"https://127.0.0.1:{self.port}/control/{path}",
                                     data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=self._ssl, timeout=10) as resp:
            text = resp.read().decode()
        return json.loads(text) if text.strip() else None

    def requests(self):
        """Every notify request so far: dicts with token, time_ms,
        http_version, connection, status."""
        return self._control("requests")

    def stats(self):
        return self._control("stats")

    def set_mode(self, **mode):
        """set_mode(status=500), set_mode(hang=True), set_mode() = scripted."""
        self._control("mode", mode)

    def reset(self):
        self._control("reset", {})

    def requests_for(self, token):
        return [r for r in self.requests() if r["token"] == token]

    def answered(self, token, status=200):
        return [r for r in self.requests_for(token) if r.get("status") == status]

    def wait_for_requests(self, predicate, timeout=QUICK, what="gateway requests"):
        """Waits until predicate(requests) holds; returns the requests."""
        def check():
            reqs = self.requests()
            return reqs if predicate(reqs) else None
        return wait_until(check, timeout, what, interval=0.1)

    def wait_answered(self, tokens, status=200, timeout=QUICK):
        """Waits until each token got at least one answer `status`."""
        tokens = list(tokens)
        return self.wait_for_requests(
            lambda reqs: all(any(r["token"] == t and r.get("status") == status for r in reqs)
                             for t in tokens),
            timeout, f"a {status} answer for each of {len(tokens)} token(s)")


class ImapClient(imaplib.IMAP4):
    """imaplib plus METADATA: quoted and LITERAL+ forms of SETMETADATA."""

    def raw_command(self, command):
        """Sends `TAG command`; returns (tagged status, text, untagged lines)."""
        tag = self._new_tag().decode()
        self.send(f"{tag} {command}\r\n".encode())
        return self._read_tagged(tag)

    def set_token(self, token, entry="/private/devicetoken", literal=False, expect="OK"):
        """SETMETADATA with the value quoted, or as a LITERAL+ {N+} (as Delta
        Chat before core 2.58 sends it). Asserts the tagged answer `expect`."""
        if literal:
            tag = self._new_tag().decode()
            data = token.encode()
            self.send(f"{tag} SETMETADATA INBOX ({entry} ".encode()
                      + b"{%d+}\r\n" % len(data) + data + b")\r\n")
            status, text, _ = self._read_tagged(tag)
        else:
            status, text, _ = self.raw_command(f"SETMETADATA INBOX ({entry} {quote(token)})")
        if expect and status != expect:
            raise AssertionError(f"SETMETADATA answered {status} {text}, expected {expect}")
        return status, text

    def _read_tagged(self, tag):
        untagged = []
        while True:
            resp = self._get_line()
            # A literal in a response ("{N}" at the end of a line) is
            # followed by N raw bytes and the rest of the line.
            m = re.search(rb"\{(\d+)\}$", resp)
            while m:
                data = self.read(int(m.group(1)))
                rest = self._get_line()
                resp = resp + b"\r\n" + data + rest
                m = re.search(rb"\{(\d+)\}$", rest)
            if resp.startswith(tag.encode() + b" "):
                status, _, text = resp[len(tag) + 1:].decode(errors="replace").partition(" ")
                return status, text, untagged
            untagged.append(resp.decode(errors="replace"))

    def get_metadata(self, entry, mailbox="INBOX"):
        """The entry's value on `mailbox` ("" = the server; None for NIL),
        quoted or literal."""
        status, text, untagged = self.raw_command(f"GETMETADATA {quote(mailbox)} {entry}")
        if status != "OK":
            raise AssertionError(f"GETMETADATA answered {status} {text}")
        for line in untagged:
            m = re.match(r'\* METADATA \S+ \(\S+ (?:"((?:[^"\\]|\\.)*)"|NIL|\{\d+\}\r\n(.*))\)$',
                         line, re.S | re.I)
            if m:
                return m.group(1) if m.group(1) is not None else m.group(2)
        return None

    def get_tokens(self, entry="/private/devicetoken"):
        """The device tokens: the entry's value split at spaces ([] for NIL)."""
        value = self.get_metadata(entry)
        return value.split(" ") if value else []


def quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class PrivateDovecot:
    """A Dovecot instance of its own (config, sockets, logs, mail homes and
    spool in a temporary directory; IMAP and LMTP on free 127.0.0.1 ports)
    with the freshly built plugin loaded globally and the sender service.

    privilege="system": Debian's default, lmtp runs as root and each user is
    a system user with its own uid (cmntest1, cmntest2, ... created once).
    privilege="vmail": chatmail's `service lmtp { user = vmail }`: every
    user is virtual, with the one uid of the system user cmnvmail."""

    def __init__(self, gateway=None, privilege="system", users=("cmntest1", "cmntest2"),
                 sieve=False, plugin=True, settings=None, extra_conf="", workdir=None):
        assert privilege in ("system", "vmail")
        self.gateway = gateway
        self.privilege = privilege
        self.users = list(users)
        self.sieve = sieve
        self.plugin = plugin
        self.settings = dict(settings or {})
        self.extra_conf = extra_conf
        self.dir = Path(workdir) if workdir else make_workdir("cmn-dovecot-")
        self.own_dir = workdir is None
        self.conf = self.dir / "dovecot.conf"
        self.log_path = self.dir / "dovecot.log"
        self.spool_dir = self.dir / "spool"
        self.imap_port = None
        self.lmtp_port = None
        self.started = False
        self.accounts = {}

    # ---- setup -----------------------------------------------------------
    def _account(self, user):
        if self.privilege == "vmail":
            pw = ensure_system_user("cmnvmail")
            home = self.dir / "vmail" / address(user)
        else:
            pw = ensure_system_user(user)
            home = self.dir / "home" / user
        return {"addr": address(user), "uid": pw.pw_uid, "gid": pw.pw_gid, "home": home}

    def add_user(self, user):
        """Adds a user (also after start: passwd-file is re-read)."""
        acct = self._account(user)
        self.accounts[user] = acct
        home = acct["home"]
        home.parent.mkdir(parents=True, exist_ok=True)
        home.parent.chmod(0o755)
        if self.privilege == "vmail":
            os.chown(home.parent, acct["uid"], acct["gid"])
        home.mkdir(exist_ok=True)
        home.chmod(0o700)
        os.chown(home, acct["uid"], acct["gid"])
        self._write_users()
        return acct

    def _write_users(self):
        lines = [f"{a['addr']}:{{PLAIN}}{PASSWORD}:{a['uid']}:{a['gid']}::{a['home']}::"
                 for a in self.accounts.values()]
        path = self.dir / "users"
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.chmod(0o644)
        tmp.rename(path)

    def _module_dir(self):
        mods = self.dir / "modules"
        mods.mkdir(exist_ok=True)
        for so in DOVECOT_MODULES.glob("*.so"):
            if so.name != PLUGIN_SO.name:
                (mods / so.name).symlink_to(so)
        if self.plugin:
            (mods / PLUGIN_SO.name).symlink_to(PLUGIN_SO)
        return mods

    def plugin_settings(self):
        s = {"chatmail_notify_spool_dir": str(self.spool_dir),
             "chatmail_notify_backoff_base": "2s"}
        if self.gateway is not None:
            s["chatmail_notify_url"] = self.gateway.url
            s["chatmail_notify_ca_file"] = str(self.gateway.ca_file)
        if self.sieve:
            s["sieve"] = "file:~/sieve;active=~/.dovecot.sieve"
        s.update(self.settings)
        return s

    def _config(self):
        d = self.dir
        plugins = "$mail_plugins chatmail_notify" if self.plugin else "$mail_plugins"
        plugin_block = "\n".join(f"  {k} = {v}" for k, v in self.plugin_settings().items())
        lmtp_user = "  user = cmnvmail\n" if self.privilege == "vmail" else ""
        sender = ""
        if self.plugin:
            sender = f"""
service chatmail-notify-sender {{
  executable = {SENDER_BIN}
  process_min_avail = 1
  process_limit = 1
}}"""
        sieve = "protocol lmtp {\n  mail_plugins = $mail_plugins sieve\n}\n" if self.sieve else ""
        return f"""# written by tests/integration/harness.py
instance_name = cmn-test-{d.name}
base_dir = {d}/run
state_dir = {d}/state
log_path = {self.log_path}
protocols = imap lmtp
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:~/Maildir
mail_plugin_dir = {d}/modules
mail_plugins = {plugins}
imap_metadata = yes
mail_attribute_dict = file:%h/dovecot-attributes
imap_capability = +XDELTAPUSH XCHATMAIL
postmaster_address = postmaster@{DOMAIN}
hostname = mx.{DOMAIN}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
{lmtp_user}  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.lmtp_port}
  }}
}}
{sieve}{sender}
plugin {{
{plugin_block}
}}
{self.extra_conf}
{Path(EXTRA_CONF).read_text() if EXTRA_CONF else ""}"""

    def write_config(self):
        self.conf.write_text(self._config())
        self.conf.chmod(0o644)

    def start(self):
        for name in ("run", "state"):
            (self.dir / name).mkdir(exist_ok=True)
        # As the package's postinst does: the spool, and incoming/ so that a
        # delivery right after the start need not wait for the sender.
        self.spool_dir.mkdir(mode=0o711, exist_ok=True)
        incoming = self.spool_dir / "incoming"
        incoming.mkdir(exist_ok=True)
        incoming.chmod(0o1733)
        if not (self.dir / "modules").exists():
            self._module_dir()
        for user in self.users:
            if user not in self.accounts:
                self.add_user(user)
        if self.imap_port is None:
            self.imap_port, self.lmtp_port = free_port(), free_port()
        self.write_config()
        # dovecot daemonizes; its own stdout/stderr go to a file, never a pipe.
        with open(self.dir / "dovecot.stderr", "ab") as out:
            subprocess.run(["dovecot", "-c", str(self.conf)], check=True, env=dovecot_env(),
                           stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=QUICK)
        self.started = True
        wait_until(lambda: port_open(self.imap_port) and port_open(self.lmtp_port),
                   QUICK, "Dovecot's IMAP and LMTP ports")
        if self.plugin:
            self.wait_sender()
        return self

    def master_pid(self):
        try:
            return int((self.dir / "run" / "master.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def stop(self, timeout=QUICK):
        """doveadm stop, waiting (bounded) for the master to go; then kill."""
        if not self.started:
            return
        pid = self.master_pid()
        subprocess.run(["doveadm", "-c", str(self.conf), "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout,
                       env=dovecot_env())
        if pid:
            try:
                wait_until(lambda: not pid_alive(pid), timeout, "the Dovecot master to exit")
            except AssertionError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.started = False

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        self.stop()
        if self.own_dir and not os.environ.get("CMN_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.dump_log()
            self.cleanup()
            raise

    def __exit__(self, exc_type, *exc):
        if exc_type is not None:
            self.dump_log()
        self.cleanup()

    # ---- users, files ----------------------------------------------------
    def home(self, user):
        return self.accounts[user]["home"]

    def address(self, user):
        return self.accounts[user]["addr"]

    def token_file(self, user):
        return self.home(user) / "metadata.json"

    def write_as_user(self, user, path, text, mode=0o600):
        acct = self.accounts[user]
        path = Path(path)
        path.write_text(text)
        path.chmod(mode)
        os.chown(path, acct["uid"], acct["gid"])

    def set_sieve(self, user, script):
        """The user's active Sieve script (needs sieve=True)."""
        self.write_as_user(user, self.home(user) / ".dovecot.sieve", script)

    def mailbox_count(self, user, mailbox="INBOX"):
        out = self.doveadm("mailbox", "status", "-u", self.address(user), "messages",
                           mailbox).stdout
        m = re.search(r"messages=(\d+)", out)
        return int(m.group(1)) if m else 0

    # ---- protocols ---------------------------------------------------------
    @contextlib.contextmanager
    def imap(self, user):
        client = ImapClient("127.0.0.1", self.imap_port, timeout=QUICK)
        try:
            client.login(self.address(user), PASSWORD)
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    def lmtp_deliver(self, rcpts, sender="alice@example.net", msg=None, subject="hello"):
        """Delivers one message over LMTP; returns {address: (code, text)},
        LMTP's own answer per recipient after DATA (250 = saved).
        `rcpts` are user names or addresses."""
        if isinstance(rcpts, str):
            rcpts = [rcpts]
        addrs = [self.address(r) if r in self.accounts else r for r in rcpts]
        msg = msg or make_message(", ".join(addrs), sender=sender, subject=subject)
        results = {}
        with smtplib.LMTP("127.0.0.1", self.lmtp_port, timeout=QUICK) as lmtp:
            lmtp.ehlo("test.example.net")
            code, text = lmtp.mail(sender)
            if code != 250:
                raise AssertionError(f"LMTP MAIL FROM answered {code} {text}")
            accepted = []
            for addr in addrs:
                code, text = lmtp.rcpt(addr)
                if code == 250:
                    accepted.append(addr)
                else:
                    results[addr] = (code, text.decode(errors="replace"))
            if accepted:
                # LMTP answers DATA once per accepted recipient, in order.
                code, text = lmtp.data(msg.as_bytes())
                results[accepted[0]] = (code, text.decode(errors="replace"))
                for addr in accepted[1:]:
                    code, text = lmtp.getreply()
                    results[addr] = (code, text.decode(errors="replace"))
        return results

    def lda_deliver(self, user, sender="alice@example.net", msg=None):
        """Delivers one message with dovecot-lda -d (run as root, as an MTA
        would); returns the CompletedProcess."""
        addr = self.address(user)
        msg = msg or make_message(addr, sender=sender)
        return subprocess.run([DOVECOT_LDA, "-c", str(self.conf), "-d", addr, "-f", sender],
                              input=msg.as_bytes(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=QUICK, env=dovecot_env())

    def doveadm(self, *args, check=True):
        res = subprocess.run(["doveadm", "-c", str(self.conf), *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, timeout=QUICK,
                             env=dovecot_env())
        if check and res.returncode != 0:
            raise AssertionError(f"doveadm {' '.join(args)} failed ({res.returncode}): "
                                 f"{res.stderr.strip()}")
        return res

    # ---- logs --------------------------------------------------------------
    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_mark(self):
        """A position in the log; log_since(mark) reads what came after it."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, mark):
        with contextlib.suppress(FileNotFoundError), open(self.log_path, "rb") as f:
            f.seek(mark)
            return f.read().decode(errors="replace")
        return ""

    def wait_for_log(self, pattern, timeout=QUICK, since=0):
        rx = re.compile(pattern)
        return wait_until(lambda: rx.search(self.log_since(since)), timeout,
                          f"a log line matching {pattern!r}")

    def errors(self, since=0):
        """Error and fatal lines (panics included)."""
        return [l for l in self.log_since(since).splitlines()
                if re.search(r"\b(Error|Fatal|Panic):", l)]

    def dump_log(self):
        if os.environ.get("CMN_QUIET"):
            return
        text = self.log()
        if text:
            print(f"\n---- {self.log_path} (last 60 lines) ----")
            print("\n".join(text.splitlines()[-60:]))

    # ---- the sender and its spool ------------------------------------------
    def wait_sender(self, timeout=QUICK):
        """Waits until the sender service holds the spool; returns its pid."""
        return wait_until(self.sender_pid, timeout, "the chatmail-notify-sender service")

    def sender_pid(self):
        """The pid of this instance's chatmail-notify-sender process, or None."""
        master = self.master_pid()
        if master is None:
            return None
        for pid in children_of(master):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/exe") == str(SENDER_BIN.resolve()):
                    return pid
        return None

    def spool_status(self, user=None):
        """The spool as the core's C API sees it (cmn-spool-tool status);
        "items" counts only `user`'s items when given."""
        addr = [self.address(user)] if user else []
        out = subprocess.run([str(SPOOL_TOOL), "status", str(self.spool_dir), *addr], check=True,
                             stdout=subprocess.PIPE, text=True, timeout=QUICK).stdout
        return json.loads(out)

    def wait_spool_empty(self, timeout=QUICK):
        """Waits until the spool holds no item (sent, gone or dropped)."""
        return wait_until(lambda: self.spool_status()["items"] == 0, timeout,
                          "an empty spool")

    def enqueue_as(self, user, addr, store_path, tokens):
        """Writes a spool item with the core's writer under `user`'s uid,
        as a delivery for that user would (or a hostile local user could)."""
        acct = self.accounts[user]
        return subprocess.run([str(SPOOL_TOOL), "enqueue", str(self.spool_dir), addr,
                               str(store_path), *tokens],
                              user=acct["uid"], group=acct["gid"], extra_groups=[],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=QUICK)


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children_of(ppid):
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(") ", 1)[-1].split()
            if int(fields[1]) == ppid:
                kids.append(int(entry))
    return kids


class DovecotTestCase(unittest.TestCase):
    """Base for the tests: a fake gateway and a private Dovecot per test.
    Subclasses set class attributes to shape the instance."""
    privilege = "system"
    users = ("cmntest1", "cmntest2")
    sieve = False
    settings = {}
    extra_conf = ""
    requires = (PLUGIN_SO, SENDER_BIN, SPOOL_TOOL)
    gateway_delay_ms = 0

    def setUp(self):
        reason = built(*self.requires)
        if reason:
            self.skipTest(reason)
        self.workdir = make_workdir("cmn-it-")
        self.addCleanup(self._remove_workdir)
        self.gateway = FakeGateway(self.workdir, delay_ms=self.gateway_delay_ms)
        self.gateway.start()
        self.addCleanup(self.gateway.stop)
        self.dovecot = PrivateDovecot(gateway=self.gateway, privilege=self.privilege,
                                      users=self.users, sieve=self.sieve,
                                      settings=self.settings, extra_conf=self.extra_conf,
                                      workdir=self.workdir / "dovecot")
        self.dovecot.dir.mkdir()
        self.dovecot.dir.chmod(0o755)
        self.addCleanup(self._stop_dovecot)
        self.dovecot.start()

    def _stop_dovecot(self):
        result = getattr(getattr(self, "_outcome", None), "result", None)
        failed = result is not None and any(
            t is self for t, _ in list(result.failures) + list(result.errors))
        if failed or os.environ.get("CMN_VERBOSE"):
            self.dovecot.dump_log()
        self.dovecot.stop()

    def _remove_workdir(self):
        if not os.environ.get("CMN_KEEP_TMP"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def register(self, user, *tokens, literal=False):
        with self.dovecot.imap(user) as imap:
            for token in tokens:
                imap.set_token(token, literal=literal)

    def tokens_of(self, user):
        with self.dovecot.imap(user) as imap:
            return imap.get_tokens()

    def deliver(self, user, **kw):
        """LMTP delivery to one user that must be answered 250."""
        results = self.dovecot.lmtp_deliver(user, **kw)
        self.assertEqual([r[0] for r in results.values()], [250],
                         f"LMTP delivery to {user}: {results}")

    def report_figures(self, **figures):
        """Prints what the test measured (one `FIGURES <test> <json>` line)
        and appends it to $CMN_FIGURES_FILE when set (RELIABILITY.md's tables)."""
        line = json.dumps({"test": self.id(), **figures}, sort_keys=False)
        print(f"\nFIGURES {line}", flush=True)
        (self.workdir / "figures.json").write_text(line + "\n")
        if os.environ.get("CMN_FIGURES_FILE"):
            with open(os.environ["CMN_FIGURES_FILE"], "a") as f:
                f.write(line + "\n")

    def assertNoErrors(self, since=0):
        self.assertEqual(self.dovecot.errors(since), [], "errors in Dovecot's log")
