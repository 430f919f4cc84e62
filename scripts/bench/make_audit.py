#!/usr/bin/env python3
"""Writes N synthetic Keyscope audit events as JSON lines, the input of `keyscope audit append`,
for the incident-report benchmark.

    make_audit.py --records 10000000 --out /tmp/audit.jsonl [--seed 558] [--target-rate 0.01]
                  [--expected expected.json]

The traffic is what Keyscope's identity and mail services record: tokens are issued
(`TokenIssued`), then presented a few times each to the mail service, every request writing a
`TokenValidated` (Success) and a `MailItemsAccessed` (`Bind` with Folders/FolderItems
InternetMessageId, or `Sync` with folder paths and an OperationCount), now and then a `Send`;
some presentations are refused (`TokenValidated` Failure: expired, revoked key). About 20
signing keys (kids) over 50 tenants (OrganizationId), 200 users each; every kid is activated
(`KeyActivated`) first, two are revoked and replaced mid-stream (`KeyRevoked`, `KeyActivated`).

About --target-rate of the traffic (default 1 %) uses the key `kid-target`: its tokens are
issued, accepted and then used to read mailboxes; it is revoked by the very last record. No
other value contains the text `kid-target`. Events carry CreationTime (increasing, from
2026-11-01) and never seq or prev. Exactly --records lines are written. The same seed gives the
same file.

What `keyscope incident report --kid kid-target` should find (records, tokens issued and
accepted, refused attempts, MailItemsAccessed operations and records, mailboxes, Send records,
lifecycle records) is printed to stderr as one JSON object, and written to --expected FILE.
"""
import argparse
import datetime as dt
import json
import random
import sys

TARGET = "kid-target"
TENANTS = [f"tenant{i:02d}" for i in range(50)]
USERS_PER_TENANT = 200
APPS = [  # (AppId, ClientInfoString, weight)
    ("app-outlook-web", "Client=OWA;Mozilla/5.0 (Windows NT 10.0; Win64; x64) Edg/124.0", 35),
    ("app-outlook-desktop", "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0)", 30),
    ("app-mobile-ios", "Keyscope-iOS/2.3 CFNetwork/1410.0.3 Darwin/22.6.0", 15),
    ("app-mobile-android", "Keyscope-Android/2.3 okhttp/4.12.0", 10),
    ("app-crm-sync", "crm-connector/5.1 (+https://crm.example/connector)", 5),
    ("app-backup", "backup-agent/3.4", 5),
]
TARGET_APPS = [("app-outlook-web", APPS[0][1]), ("app-unknown-7f3a", "python-requests/2.31.0")]
TARGET_IPS = ["51.89.156.153", "176.31.90.129", "137.74.181.100", "193.36.119.45"]
FOLDERS = ["Inbox", "Sent", "Drafts", "Archive", "Inbox/Projects", "Inbox/Finance",
           "Trash", "Inbox/Vendors", "Archive/2025"]
SCOPES = ["mail.read", "mail.read mail.send", "openid mail.read"]
REFUSALS = [("token_expired", "the token expired"), ("audience_mismatch", "wrong audience")]
POOL = 5000          # tokens in use at a time (normal traffic)
TARGET_POOL = 40     # tokens of kid-target in use at a time
P_ISSUE = 0.15       # share of actions that issue a token (each is then used ~5-6 times)
P_REFUSED = 0.02     # share of actions that present a token that is refused
P_SEND = 0.02        # share of mail requests that also send a message


class Gen:
    def __init__(self, seed, target_rate):
        self.r = random.Random(seed)
        self.target_rate = target_rate
        r = self.r
        self.users = []  # (tenant, upn, ip)
        for t in TENANTS:
            for u in range(USERS_PER_TENANT):
                ip = f"{r.choice([81, 86, 92, 109, 203])}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"
                self.users.append((t, f"user{u:03d}@{t}.example", ip))
        self.kids = {f"kid-{t}-2026-11": t for t in r.sample(TENANTS, 19)}  # kid -> realm
        self.kid_list = list(self.kids)
        self.next_kid = 0
        self.app_w = [w for _, _, w in APPS]
        self.micros = int(dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000
        self.sec, self.sec_text = None, ""
        self.pool, self.tpool = [], []
        self.revoked = set()
        self.exp = dict(kid=TARGET, tokens_issued=0, tokens_accepted=0, refused_attempts=0,
                        mail_records=0, mail_operations=0, mail_sent=0, lifecycle=0,
                        target_records=0)
        self.mailboxes = set()

    def time(self):
        self.micros += self.r.randrange(0, 40_000)
        sec, frac = divmod(self.micros, 1_000_000)
        if sec != self.sec:
            self.sec = sec
            self.sec_text = dt.datetime.fromtimestamp(sec, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self.sec_text}.{frac:06d}Z"

    def jti(self):
        return f"{self.r.getrandbits(120):030x}"

    # --- records -------------------------------------------------------------------------
    def key_event(self, op, kid, reason=None):
        rec = {"CreationTime": self.time(), "Operation": op, "OrganizationId": self.kids.get(kid, "consumers"),
               "KeyId": kid, "Issuer": f"https://id.keyscope.example/t/{self.kids.get(kid, 'consumers')}"}
        if reason:
            rec.update({"Reason": reason, "PreviousState": "active", "ClientIPAddress": "10.0.0.5",
                        "ClientInfoString": "keyscope-cli/0.1"})
        if kid == TARGET:
            self.exp["lifecycle"] += 1
        return json.dumps(rec, separators=(",", ":"))

    def issue(self, target):
        r = self.r
        if target:
            tenant, upn, _ = r.choice(self.users[:USERS_PER_TENANT * 3])  # three tenants reached
            kid = TARGET
            app, info = r.choice(TARGET_APPS)
            ip = r.choice(TARGET_IPS)
        else:
            tenant, upn, ip = r.choice(self.users)
            kid = r.choice(self.kid_list)
            app, info, _ = r.choices(APPS, self.app_w)[0]
        tok = (self.jti(), kid, tenant, upn, app, info, ip)
        pool, size = (self.tpool, TARGET_POOL) if target else (self.pool, POOL)
        if len(pool) < size:
            pool.append(tok)
        else:
            pool[r.randrange(size)] = tok
        jti = tok[0]
        if target:
            self.exp["tokens_issued"] += 1
        return [f'{{"CreationTime":"{self.time()}","Operation":"TokenIssued","OrganizationId":"{tenant}",'
                f'"UserId":"{upn}","AppId":"{app}","TokenId":"{jti}","KeyId":"{kid}",'
                f'"Issuer":"https://id.keyscope.example/t/{tenant}","Audience":"https://mail.keyscope.example",'
                f'"Scope":"{r.choice(SCOPES)}","GrantType":"authorization_code","ResultStatus":"Success",'
                f'"ExpiresAt":{self.micros // 1_000_000 + 3600},"ClientIPAddress":"{ip}","ClientInfoString":"{info}"}}']

    def validated(self, tok, refusal=None):
        jti, kid, tenant, upn, app, info, ip = tok
        tail = (f',"ResultStatus":"Failure","Reason":"{refusal[0]}","Detail":"{refusal[1]}"'
                if refusal else ',"ResultStatus":"Success"')
        return (f'{{"CreationTime":"{self.time()}","Operation":"TokenValidated","OrganizationId":"{tenant}",'
                f'"Resource":"https://mail.keyscope.example","UserId":"{upn}","AppId":"{app}",'
                f'"TokenId":"{jti}","KeyId":"{kid}","Issuer":"https://id.keyscope.example/t/{tenant}"'
                f'{tail},"ClientIPAddress":"{ip}","ClientInfoString":"{info}"}}')

    def mail(self, tok, target):
        r = self.r
        jti, kid, tenant, upn, app, info, ip = tok
        if r.random() < 0.6:
            access = "Bind"
            folders = []
            for path in r.sample(FOLDERS, r.choice([1, 1, 1, 2])):
                items = ",".join(f'{{"InternetMessageId":"<{r.getrandbits(64):016x}@{tenant}.example>"}}'
                                 for _ in range(r.choice([1, 1, 2, 3])))
                folders.append((path, f'{{"Path":"{path}","FolderItems":[{items}]}}'))
            count = sum(f[1].count("InternetMessageId") for f in folders)
        else:
            access = "Sync"
            count = r.randrange(1, 300)
            folders = [(p, f'{{"Path":"{p}"}}') for p in r.sample(FOLDERS, r.choice([1, 1, 2]))]
        if target:
            self.exp["mail_records"] += 1
            self.exp["mail_operations"] += count
            self.mailboxes.add(upn)
        session = f"s-{jti[:12]}"
        return (f'{{"CreationTime":"{self.time()}","Operation":"MailItemsAccessed","OrganizationId":"{tenant}",'
                f'"UserId":"{upn}","MailboxOwnerUPN":"{upn}","AppId":"{app}","TokenId":"{jti}","KeyId":"{kid}",'
                f'"Issuer":"https://id.keyscope.example/t/{tenant}","SessionId":"{session}",'
                f'"MailAccessType":"{access}","ResultStatus":"Succeeded","OperationCount":{count},'
                f'"ClientIPAddress":"{ip}","ClientInfoString":"{info}",'
                f'"Folders":[{",".join(f for _, f in folders)}]}}')

    def send(self, tok, target):
        r = self.r
        jti, kid, tenant, upn, app, info, ip = tok
        if target:
            self.exp["mail_sent"] += 1
        rcpt = r.choice(self.users)[1]
        return (f'{{"CreationTime":"{self.time()}","Operation":"Send","OrganizationId":"{tenant}",'
                f'"UserId":"{upn}","MailboxOwnerUPN":"{upn}","AppId":"{app}","TokenId":"{jti}","KeyId":"{kid}",'
                f'"SessionId":"s-{jti[:12]}","ResultStatus":"Succeeded",'
                f'"Item":{{"Id":"M{r.getrandbits(64):016x}","InternetMessageId":"<{r.getrandbits(64):016x}@{tenant}.example>"}},'
                f'"Recipients":["{rcpt}"],"ClientIPAddress":"{ip}","ClientInfoString":"{info}"}}')

    def action(self):
        """The records of one step of traffic."""
        r = self.r
        target = r.random() < self.target_rate
        pool = self.tpool if target else self.pool
        x = r.random()
        if not pool or x < P_ISSUE:
            return self.issue(target), target
        tok = r.choice(pool)
        if tok[1] in self.revoked:
            return [self.validated(tok, ("revoked_key", "the key was revoked"))], False
        if x < P_ISSUE + P_REFUSED:
            if target:
                self.exp["refused_attempts"] += 1
            return [self.validated(tok, r.choice(REFUSALS))], target
        if target:
            self.exp["tokens_accepted"] += 1
        out = [self.validated(tok), self.mail(tok, target)]
        if r.random() < P_SEND:
            out.append(self.send(tok, target))
        return out, target

    def rotate(self):
        """Revokes one ordinary kid and activates its replacement."""
        old = self.kid_list.pop(0)
        self.revoked.add(old)
        realm = self.kids[old]
        self.next_kid += 1
        new = f"kid-{realm}-2026-12-r{self.next_kid}"
        self.kids[new] = realm
        self.kid_list.append(new)
        return [self.key_event("KeyRevoked", old, "scheduled drill"), self.key_event("KeyActivated", new)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--out", required=True, help="output file ('-' for stdout)")
    ap.add_argument("--seed", type=int, default=558)
    ap.add_argument("--target-rate", type=float, default=0.01,
                    help="share of traffic using kid-target (default 0.01)")
    ap.add_argument("--expected", help="also write the expected report figures (JSON) here")
    a = ap.parse_args()
    if a.records < 100:
        sys.exit("--records must be at least 100")
    g = Gen(a.seed, a.target_rate)
    out = sys.stdout if a.out == "-" else open(a.out, "w", encoding="utf-8", newline="\n")
    n = 0
    buf = []

    def emit(lines, target=False):
        nonlocal n
        for line in lines:
            buf.append(line)
        n += len(lines)
        if target:
            g.exp["target_records"] += len(lines)
        if len(buf) >= 4096:
            out.write("\n".join(buf) + "\n")
            buf.clear()

    emit([g.key_event("KeyActivated", k) for k in g.kid_list])
    emit([g.key_event("KeyActivated", TARGET)], True)
    rotations = [a.records * 3 // 10, a.records * 6 // 10]
    while n < a.records - 4:  # room for an action of up to 3 records and the final revocation
        if rotations and n >= rotations[0]:
            rotations.pop(0)
            emit(g.rotate())
            continue
        lines, target = g.action()
        emit(lines, target)
    while n < a.records - 1:
        emit(g.issue(False))
    emit([g.key_event("KeyRevoked", TARGET, "suspected compromise")], True)
    out.write("\n".join(buf) + ("\n" if buf else ""))
    if out is not sys.stdout:
        out.close()
    assert n == a.records, (n, a.records)
    exp = dict(records=n, **g.exp, mailboxes=len(g.mailboxes))
    print(json.dumps(exp), file=sys.stderr)
    if a.expected:
        with open(a.expected, "w", encoding="utf-8") as f:
            json.dump(exp, f)
            f.write("\n")


if __name__ == "__main__":
    main()
