"""A real mail system for the bounce tests: Debian's Postfix and Dovecot, each in a throw-away folder.

`MailSystem(folder)` starts
- Postfix (its own config_directory, queue_directory and data_directory under `folder`, `start-fg`,
  SMTP on 127.0.0.1 on a free port) that relays nowhere: mail for `live.test` users is delivered, mail
  for unknown users of `dead.test` is accepted, then bounced with a real DSN to the envelope sender;
  mail for the bounce mailbox (`bounces@bounce.test`, with `+extension`s) goes to a Maildir;
- Dovecot (its own base_dir, state and log, a passwd-file with one user) serving that same Maildir
  over IMAPS and IMAP with STARTTLS on 127.0.0.1, with certificates made at test time.

Postfix's master runs as root and drops to the `postfix` user (it cannot run otherwise), so these tests
need root, which the test machines have; the mailboxes belong to `nobody`. `stop()` ends both (by pid).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from support.smtp_servers import make_certs

BOUNCE_USER = "bounces"
BOUNCE_DOMAIN = "bounce.test"
PASSWORD = "imap-test-password-42"
LIVE_USERS = ("reader", "fan", "critic")  # mailboxes of live.test; any other address there or at dead.test bounces
MAIL_UID = 65534  # nobody: both Postfix's virtual agent and Dovecot act as this user on the Maildirs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available() -> str | None:
    """Why this machine cannot run the mail system, or None."""
    if os.geteuid() != 0:
        return "Postfix's master must start as root"
    for tool in ("/usr/sbin/postfix", "/usr/sbin/dovecot"):
        if not os.path.exists(tool):
            return f"{tool} is missing (scripts/test installs postfix and dovecot-imapd)"
    return None


MASTER_CF = """\
{smtp} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
config_directory = {etc}
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
maillog_file = {root}/postfix.log
maillog_file_prefixes = {root}
myhostname = mx.test
mydomain = test
myorigin = mx.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
# accept everyone at RCPT time, so unknown users come back as DSNs, as behind a real relay
smtpd_reject_unlisted_recipient = no
virtual_mailbox_domains = live.test, dead.test, {bounce_domain}
virtual_mailbox_base = {mail}
virtual_mailbox_maps = texthash:{etc}/mailboxes
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{uid}
recipient_delimiter = +
# relaying nowhere: anything not for the domains above bounces at once
default_transport = error:this test relay sends nowhere
relay_transport = error:this test relay sends nowhere
smtp_dns_support_level = disabled
alias_maps =
alias_database =
biff = no
notify_classes =
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
bounce_queue_lifetime = 0
delay_warning_time = 0
# full.test: every delivery is deferred (4.2.2 mailbox full) and, tried only once, returned as failed: a soft bounce
transport_maps = texthash:{etc}/transport
maximal_queue_lifetime = 0
"""

DOVECOT_CONF = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{certs}/server.pem
ssl_key = <{certs}/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:{mail}/%d/%n/Maildir
mail_uid = {uid}
mail_gid = {uid}
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={uid} home={mail}/%d/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""


class MailSystem:
    """Postfix and Dovecot in a throw-away folder; see the module docstring."""

    def __init__(self, imap_capability: str | None = None) -> None:
        """`imap_capability`: what Dovecot advertises after login (to test servers without MOVE or UIDPLUS)."""
        self.imap_capability = imap_capability
        self.root = Path(tempfile.mkdtemp(prefix="publisher-mail-"))
        self.root.chmod(0o755)  # Postfix's and Dovecot's own users walk into it
        self.smtp_port, self.imap_port, self.imaps_port = free_port(), free_port(), free_port()
        self.certs = make_certs(self.root / "certs")
        self.mail = self.root / "mail"
        self.procs: list[subprocess.Popen] = []
        self.bounce_address = f"{BOUNCE_USER}@{BOUNCE_DOMAIN}"
        self.login = self.bounce_address
        self._start_postfix()
        self._start_dovecot()

    # -- postfix ---------------------------------------------------------------------------------------

    def _start_postfix(self) -> None:
        etc, queue, data = self.root / "postfix", self.root / "queue", self.root / "data"
        for d in (etc, queue, data, self.mail):
            d.mkdir()
        os.chown(data, _uid("postfix"), _gid("postfix"))
        os.chown(self.mail, MAIL_UID, MAIL_UID)
        values = dict(etc=etc, queue=queue, data=data, root=self.root, mail=self.mail, uid=MAIL_UID,
                      bounce_domain=BOUNCE_DOMAIN)
        (etc / "main.cf").write_text(MAIN_CF.format(**values))
        (etc / "master.cf").write_text(MASTER_CF.format(smtp=f"127.0.0.1:{self.smtp_port}"))
        # one feedback mailbox for bounces and mailto unsubscribes, as most senders have; two live readers
        box = f"{BOUNCE_DOMAIN}/{BOUNCE_USER}/Maildir/"
        (etc / "mailboxes").write_text(f"{BOUNCE_USER}@{BOUNCE_DOMAIN} {box}\nunsubscribe@{BOUNCE_DOMAIN} {box}\n"
                                       + "".join(f"{u}@live.test live.test/{u}/Maildir/\n" for u in LIVE_USERS))
        (etc / "transport").write_text("full.test retry:4.2.2 mailbox full\n")
        self._run(["postfix", "-c", str(etc), "set-permissions", "create-missing"], quiet=True)
        self.procs.append(subprocess.Popen(["postfix", "-c", str(etc), "start-fg"], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.STDOUT, start_new_session=True))
        self.etc = etc
        _wait_port(self.smtp_port, self.root / "postfix.log")

    # -- dovecot ---------------------------------------------------------------------------------------

    def _start_dovecot(self) -> None:
        for d in ("run", "state"):
            (self.root / d).mkdir()
        (self.root / "passwd").write_text(f"{self.login}:{{PLAIN}}{PASSWORD}\n")
        shutil.chown(self.root / "passwd", "dovecot")
        conf = self.root / "dovecot.conf"
        conf.write_text(DOVECOT_CONF.format(root=self.root, certs=self.certs.folder, mail=self.mail, uid=MAIL_UID,
                                            imap=self.imap_port, imaps=self.imaps_port)
                        + (f"protocol imap {{\n  imap_capability = {self.imap_capability}\n}}\n" if self.imap_capability else ""))
        for key in self.certs.folder.glob("*.key"):
            key.chmod(0o644)  # read by Dovecot's config process; a throw-away key
        self.procs.append(subprocess.Popen(["dovecot", "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.STDOUT, start_new_session=True))
        _wait_port(self.imaps_port, self.root / "dovecot.log")
        _wait_port(self.imap_port, self.root / "dovecot.log")

    # -- helpers -----------------------------------------------------------------------------------------

    def maildir(self, address: str) -> Path:
        local, _, domain = address.partition("@")
        return self.mail / domain / local / "Maildir"

    def messages(self, address: str, folder: str = "") -> list[Path]:
        """Files in a mailbox's folder ("" is INBOX; "publisher.processed" style names for others), new and cur."""
        base = self.maildir(address) / (f".{folder.replace('/', '.')}" if folder else "")
        return sorted(p for sub in ("new", "cur") if (base / sub).is_dir() for p in (base / sub).iterdir())

    def wait_messages(self, address: str, count: int, timeout: float = 60.0, folders: tuple[str, ...] = ("",)) -> list[Path]:
        """Wait until the mailbox's `folders` hold at least `count` messages (Postfix delivers and bounces on its own time)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [p for f in folders for p in self.messages(address, f)]
            if len(found) >= count:
                return found
            time.sleep(0.2)
        raise AssertionError(f"{address}: {len(self.messages(address))} message(s) after {timeout}s, expected {count};"
                             f" postfix log:\n{(self.root / 'postfix.log').read_text(errors='replace')[-3000:]}")

    def deliver(self, address: str, raw: bytes) -> None:
        """Put a message straight into a mailbox, as a delivery agent would (for the corpus and ARF tests)."""
        new = self.maildir(address) / "new"
        new.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}.publisher-test.{len(list(new.iterdir()))}:2,"
        path = new / name
        path.write_bytes(raw)
        for p in [path, *path.parents]:  # the folders made here, up to the mail root, belong to the mail user
            os.chown(p, MAIL_UID, MAIL_UID)
            if p == self.mail:
                break

    def _run(self, cmd: list[str], quiet: bool = False) -> None:
        subprocess.run(cmd, check=True, capture_output=quiet)

    def stop(self) -> None:
        """End Postfix (its own stop command waits for every child) and Dovecot, then remove the folder."""
        subprocess.run(["postfix", "-c", str(self.etc), "stop"], capture_output=True)
        for i, p in enumerate(self.procs):
            if i:  # Dovecot in the foreground ends on SIGTERM, with its children
                p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)  # its own process group, started by us
                p.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)


def _uid(name: str) -> int:
    return shutil._get_uid(name)  # type: ignore[attr-defined]


def _gid(name: str) -> int:
    return shutil._get_gid(name)  # type: ignore[attr-defined]


def _wait_port(port: int, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    text = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s; log:\n{text}")
