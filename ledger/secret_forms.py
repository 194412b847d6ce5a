"""The forms a secret takes in free text, each with a pattern that finds it.

`Redactor` (redaction.py) handles data with structure by key; these patterns catch
what reaches it as text: log lines, model output, tool results, prose with a
credential pasted into it. Each form names the groups that hold the secret: only
those are replaced, so `password=hunter2` becomes `password=[redacted]` and a reader
still sees what was there. The README's Secrets table lists the same forms.
"""

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

REDACTED = "[redacted]"

# Names that mark a value as secret wherever they are written, besides the lanes
# file's `secret_keys`: a key or a flag whose name ends with one of these.
BUILT_IN_NAMES = (
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "secret_key",
    "private_key",
    "signing_key",
    "encryption_key",
    "master_key",
    "account_key",
    "shared_access_key",
    "shared_access_signature",
    "connection_string",
    "authorization",
    "credential",
    "credentials",
    "sas",
    "sig",  # the signature of an Azure SAS token in a URL's query
    "signature",  # X-Amz-Signature, X-Goog-Signature, signed CDN URLs
    "cookie",
    "pass",  # DB_PASS, jdbc.pass
    "psk",
    "subscription_key",
    "auth_key",
    "hmac_key",
    "license_key",
    "secret_key_base",
)

# Values that hold no secret however they are labelled: flags, empty values, what
# redaction itself writes, references to a secret kept elsewhere ($VAR, ${VAR:?x},
# $(cmd), {{ .x }}, ${{ secrets.X }}, <placeholder>), SQL placeholders, type names in
# code, the words of settings (`authorization: enabled`, `id-token: write`), statsd
# samples, and BuildKit's `--secret id=x,src=y`.
_NOT_SECRET = re.compile(
    r"(?i)(?:true|false|null|none|nil|~|\**|\[redacted\]"
    r"|\$\{?\w+\}?|\$\{\w+:?[-?=+][^}]*\}|\$\(.*|\$?\{\{.*|<[\w -]+>"
    r"|\?|:\w+|%s|@\w+"
    r"|str|string!?|secretstr|bytes|&str|optional\[.*|string\[\]"
    r"|enabled|disabled|yes|no|on|off|include|omit|read|write|required|optional|expired"
    r"|same-origin|\d+\|[a-z]+|id=.*)"
)
# A value that is a name in code, not a secret: `var.db_password`,
# `getpass.getpass()`, `os.environ["X"]`, `req.headers.authorization`.
_CODE_REFERENCE = re.compile(r"[A-Za-z_]\w*(?:(?:\.[A-Za-z_]\w*)+[(\[]?|[(\[])")
# Keys that name where a secret is, or a value that only looks like one.
_REFERENCE_KEYS = ("nexttoken", "pagetoken", "continuationtoken", "synctoken")
_SHELL_DIRECTORIES = ("PWD", "OLDPWD")
# A plain word after `name:` with more words following it is prose ("password: open
# the portal and reset it"), not an assignment.
_PLAIN_WORD = re.compile(r"[A-Za-z]+")
_PROSE_FOLLOWS = re.compile(r"[ \t]+[^\s#]")


def holds_no_secret(value: str) -> bool:
    return _NOT_SECRET.fullmatch(value) is not None


def names_a_reference(key: str) -> bool:
    """Keys whose values are no secrets: `existingSecret: payments-db` (a Helm chart
    convention) names the Kubernetes Secret that holds the value, a page token only
    pages, and `PWD`/`OLDPWD` are the shell's directories."""
    normalised = key.lower().replace("-", "").replace("_", "")
    return (
        normalised.startswith("existing")
        or normalised.endswith(_REFERENCE_KEYS)
        or key in _SHELL_DIRECTORIES
    )


def name_pattern(names: Iterable[str]) -> str:
    """An alternation of names in which `_` may be written `-` or left out, longest
    first (so `api_key` wins over `key`)."""
    variants = {re.escape(name).replace("_", "[-_]?") for name in names}
    return "|".join(sorted(variants, key=len, reverse=True))


@dataclass(frozen=True)
class SecretForm:
    name: str
    example: str  # one way the form is written, with the secret "s3cr3t-value"
    pattern: re.Pattern[str]

    def substitute(self, text: str) -> str:
        return self.pattern.sub(_replace_secret_groups, text)


def _replace_secret_groups(match: re.Match[str]) -> str:
    """The match with each group named `secret*` that took part replaced."""
    start = match.start()
    pieces: list[str] = []
    last = start
    spans = sorted(
        match.span(name)
        for name, value in match.groupdict().items()
        if name.startswith("secret") and value
    )
    for begin, end in spans:
        value = match.string[begin:end]
        pieces += [match.string[last:begin], _redacted(value)]
        last = end
    pieces.append(match.string[last : match.end()])
    return "".join(pieces)


_TOKEN_CHARS = r"[A-Za-z0-9._~+/-]"  # noqa: S105 - a character class

# Case-sensitive forms recognised by their shape alone, whatever surrounds them.
TOKEN_FORMS = (
    SecretForm(
        "PEM private key block",
        "-----BEGIN PRIVATE KEY-----\ns3cr3t\n-----END PRIVATE KEY-----",
        # A block cut short (no END line) is redacted to the end of the text.
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?P<secret>.*?)"
            r"(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
            re.DOTALL,
        ),
    ),
    SecretForm(
        "JSON Web Token",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.s3cr3tS3cr3tValue",
        re.compile(r"\b(?P<secret>eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,})"),
    ),
    SecretForm(
        "OpenAI / Anthropic style key",
        "sk-proj-s3cr3tvalue0123456789",
        re.compile(r"(?<![\w-])(?P<secret>sk-[A-Za-z0-9_-]{16,})"),
    ),
    SecretForm(
        "GitHub token",
        "ghp_s3cr3tvalue0123456789abcdef",
        re.compile(r"\b(?P<secret>gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
    ),
    SecretForm(
        "Slack token",
        "xoxb-0123456789-s3cr3tvalue",
        re.compile(r"\b(?P<secret>xox[abeprs]-[A-Za-z0-9-]{10,})"),
    ),
    SecretForm(
        "AWS access key id",
        "AKIAS3CR3TVALUE01234",
        re.compile(r"\b(?P<secret>(?:AKIA|ASIA)[0-9A-Z]{16})\b"),
    ),
    SecretForm(
        "Google API key",
        "AIzaS3cr3tValue0123456789abcdefghijklmn",
        re.compile(r"\b(?P<secret>AIza[0-9A-Za-z_-]{35})"),
    ),
    SecretForm(
        "Stripe key",
        "sk_live_s3cr3tvalue0123456789",
        re.compile(r"\b(?P<secret>[rs]k_(?:live|test)_[0-9A-Za-z]{16,})"),
    ),
    SecretForm(
        "Agent Workbench claim token or session credential",
        "wbs_s3cr3tvalue0123456789abcdefghijklmnopqrstu",
        re.compile(r"\b(?P<secret>wb[cs]_[A-Za-z0-9_-]{32,})"),
    ),
    SecretForm(
        "npm token",
        "npm_s3cr3tvalue0123456789abcdefghijklmnop",
        re.compile(r"\b(?P<secret>npm_[A-Za-z0-9]{36})"),
    ),
    SecretForm(
        "GitLab, Hugging Face, Vault and SendGrid tokens",
        "glpat-s3cr3tvalue0123456789",
        re.compile(
            r"\b(?P<secret>glpat-[A-Za-z0-9_-]{20,}|hf_[A-Za-z0-9]{30,}"
            r"|hv[bsr]\.[A-Za-z0-9_-]{20,}|SG\.[\w-]{16,}\.[\w-]{16,})"
        ),
    ),
    SecretForm(
        "webhook URL (Slack, Discord, Teams, Telegram)",
        "https://hooks.slack.com/services/T000/B000/s3cr3tvalue",
        re.compile(
            r"hooks\.slack\.com/services/(?P<secret>[\w/]+)"
            r"|discord(?:app)?\.com/api/webhooks/\d+/(?P<secret2>[\w-]+)"
            r"|webhook\.office\.com/webhookb2/(?P<secret3>[^\s\"']+)"
            r"|api\.telegram\.org/bot(?P<secret4>\d{6,}:[\w-]{30,})"
        ),
    ),
    SecretForm(
        "more provider tokens",
        "whsec_s3cr3tvalue0123456789",
        re.compile(
            r"\b(?P<secret>(?:whsec_|xapp-|dop_v1_|GOCSPX-|gsk_|xai-|r8_|ATATT|lin_api_|ntn_"
            r"|PMAK-|glsa_|sntrys_|sbp_|tskey-|NRAK-|shpat_|HRKU-|pypi-Ag)[\w-]{16,}"
            r"|ya29\.[\w-]{20,}|AGE-SECRET-KEY-1[0-9A-Z]{50,})"
        ),
    ),
    SecretForm(
        "Authorization header, any scheme",
        "Authorization: SharedKey account:s3cr3t-value",
        re.compile(
            r"(?i)\b(?:proxy-)?authorization[\"']?[ \t]*[:=][ \t]*[\"']?"
            r"(?:SharedKey|Splunk|SSWS|ApiKey|AWS4-HMAC-SHA256|Digest|NTLM|HMAC|OAuth|Key"
            r"|Token|Negotiate|Signature|GoogleLogin)[ \t]+(?P<secret>[^\r\n\"']+)"
        ),
    ),
    SecretForm(
        "SQL password",
        "CREATE USER app WITH PASSWORD 's3cr3t-value';",
        re.compile(r"(?i)\b(?:password|identified[ \t]+by)[ \t]+'(?P<secret>(?:[^'\n]|'')+)'"),
    ),
    SecretForm(
        "password flags of common tools",
        "mysql -u root -ps3cr3t-value payments",
        # One rule per tool: a bare `-p` is a port or `mkdir -p` elsewhere.
        re.compile(
            r"\bmysql\w*\b[^\n]*?[ \t]-p(?P<secret>[^\s-]\S*)"
            r"|\bsshpass[ \t]+-p[ \t]*(?P<secret2>\S+)"
            r"|\b(?:docker|podman|helm|az)[ \t]+(?:registry[ \t]+)?login\b[^\n]*?[ \t]"
            r"(?:-p|--password)[ \t]+(?P<secret3>\S+)"
            r"|\bredis-cli\b[^\n]*?[ \t]-a[ \t]+(?P<secret4>\S+)"
            r"|\bldap\w+\b[^\n]*?[ \t]-w[ \t]+(?P<secret5>\S+)"
            r"|-(?:src|dest)?(?:store|key)pass[ \t]+(?P<secret6>\S+)"
            r"|\bpass:(?P<secret7>\S+)"
            r"|\b(?:requirepass|masterauth)[ \t]+(?P<secret8>\S+)"
            r"|ConvertTo-SecureString[ \t]+[\"'](?P<secret9>[^\"']+)[\"']"
        ),
    ),
    SecretForm(
        "password in a URL",
        "postgres://app:s3cr3t-value@db:5432/app",
        # Up to the last `@` before the path: a password may hold an `@` of its own.
        re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]*:(?P<secret>[^/\s'\"]+)@", re.IGNORECASE),
    ),
    SecretForm(
        "bearer credential",
        "Authorization: Bearer s3cr3t-value-0123",
        # A bearer token has digits or punctuation, or is long: "bearer authentication"
        # in prose is not one.
        # `=` only as base64 padding: `token_type=Bearer scope=x` names no token.
        re.compile(
            rf"(?i)\bbearer[ \t]+(?P<secret>(?=[A-Za-z]*[0-9._~+/-]){_TOKEN_CHARS}{{8,}}=*"
            rf"|{_TOKEN_CHARS}{{16,}}=*)"
        ),
    ),
    SecretForm(
        "user:password on a command line",
        "curl --user admin:s3cr3t-value https://example.org",
        # Not a uid:gid or user:group (`docker run -u 1000:1000`, `-u root:root`).
        re.compile(
            r"(?<!\S)(?:--user|-u)[ =]+[\"']?(?P<user>[^\s:\"']+):"
            r"(?P<secret>(?!\d+(?:\s|$))(?!(?P=user)(?:\s|$))[^\s\"']+)"
        ),
    ),
)


def named_forms(names: str) -> tuple[SecretForm, ...]:
    """Forms that are a secret because of the name written beside them."""
    return (
        SecretForm(
            "XML element",
            "<password>s3cr3t-value</password>",
            re.compile(
                rf"(?is)<(?P<ns>[\w-]+:)?(?P<tag>[\w.-]*(?:{names}))(?:\s[^>]*)?>"
                rf"(?P<secret>[^<]+|<!\[CDATA\[.*?\]\]>)</(?P=ns)?(?P=tag)>"
            ),
        ),
        SecretForm(
            "XML setting",
            '<add key="StripeApiKey" value="s3cr3t-value" />',
            re.compile(
                rf"(?i)\b(?:key|name)=[\"'][\w.-]*(?:{names})[\"'][^>]*?\bvalue="
                rf"[\"'](?P<secret>[^\"']*)[\"']"
            ),
        ),
        SecretForm(
            "netrc entry",
            "machine db login app password s3cr3t-value",
            re.compile(r"(?i)\b(?:login|user)\s+\S+\s+(?:password|passwd)\s+(?P<secret>\S+)"),
        ),
        SecretForm(
            "cookie header",
            "Cookie: session=s3cr3t-value; theme=dark",
            re.compile(r"(?i)\b(?:set-)?cookie:[ \t]*(?P<secret>[^\s=;\"']+=[^\r\n\"']+)"),
        ),
        SecretForm(
            "YAML block value",
            "client_secret: |\n  s3cr3t-value\n  second line",
            re.compile(
                rf"(?im)^(?P<indent>[ \t]*)[\w.-]*(?:{names})[ \t]*:[ \t]*[|>][-+]?[ \t]*\r?\n"
                # The block's lines become one `[redacted]` line at the block's indent.
                rf"(?P=indent)[ \t]+(?P<secret>\S.*(?:\r?\n(?P=indent)[ \t]+\S.*)*)"
            ),
        ),
        SecretForm(
            "name and value as arguments",
            'os.environ.setdefault("API_TOKEN", "s3cr3t-value")',
            re.compile(
                rf"(?i)\([ \t]*(?P<quote>[\"'])[\w.-]*(?:{names})(?P=quote)[ \t]*,[ \t]*"
                rf"(?P<open>[\"'])(?P<secret>[^\"'\n]+)(?P=open)"
            ),
        ),
        SecretForm(
            "name/value pair (Kubernetes env)",
            "- name: DB_PASSWORD\n  value: s3cr3t-value",
            re.compile(
                rf"(?im)\bname:[ \t]*[\"']?[\w.-]*(?:{names})[\"']?[ \t]*\r?\n[ \t]*-?[ \t]*"
                rf"value:[ \t]*[\"']?(?P<secret>[^\s\"']+)"
            ),
        ),
    )


def key_value_pattern(names: str) -> re.Pattern[str]:
    """`name=value`, `name: value`, `"name": "value"`, `'name': 'value'`, `\\"name\\":
    \\"value\\"` (JSON inside a JSON string), `name => value`, `--name value` and
    `--name=value`, where the name (or its last part: `DB_PASSWORD`, `x-api-key`,
    `spring.datasource.password`) ends with a secret name."""
    return re.compile(
        rf"""
        (?<![\w.$-])  # not a shell variable's use: `$PWD:/work`
        (?P<dash>--?)?
        (?P<quote>\\?["'])?
        (?P<key>[\w.-]*?(?:{names}))
        (?(quote)(?P=quote)\]?)  # `os.environ["DB_PASSWORD"] = x`
        (?P<separator>
            (?(dash)(?:[ \t]*=[ \t]*|[ \t]+)|[ \t]*(?:=>|:=|[:=])[ \t]*)
        )
        (?:
            \\"(?P<escaped>(?:(?!\\").)*)\\"
          | "(?P<double>(?:[^"\\\n]|\\.)*)"
          | '(?P<single>(?:[^'\\\n]|\\.)*)'
          | (?P<scheme>(?:bearer|basic|token|digest|negotiate)[ \t]+)
            (?P<credential>[^\s"',;&<>]+)
          | (?![\[{{(<])  # not a structure: its keys are looked at one by one
            (?![\w.-]+:[ \t])  # not a label: `credentials: Authorization: Basic x`
            (?P<bare>[^\s"',;<>)\]}}]++)
            (?![ \t]*=)  # not a key: `secret: aws_secret_access_key = x`
        )
        """,
        re.IGNORECASE | re.VERBOSE,
    )


def key_value_replacer(pattern: re.Pattern[str]) -> Callable[[re.Match[str]], str]:
    """The replacement for `key_value_pattern`'s matches: the value redacted, unless it
    holds no secret, names a reference, or is the first word of prose."""

    def replace(match: re.Match[str]) -> str:
        if names_a_reference(match.group("key")):
            return match.group(0)
        for group in ("escaped", "double", "single", "credential", "bare"):
            if match.group(group) is not None:
                break
        begin, end = match.span(group)
        value = match.group(group)
        assigned = "=" in match.group("separator")
        if group == "bare" and assigned and "&" in value:
            # `a_token=x&b=y`: after `=`, a `&` ends the value (a URL's query), and
            # what follows is looked at again.
            end = begin + value.index("&")
            value = value[: end - begin]
            rest = pattern.sub(replace, match.string[end : match.end()])
            return match.string[match.start() : begin] + _redacted(value) + rest
        if group == "bare" and (
            (
                not assigned
                and _PLAIN_WORD.fullmatch(value)
                and _PROSE_FOLLOWS.match(match.string, end)
            )
            or _CODE_REFERENCE.fullmatch(value)
            or value.lower() == re.split(r"[.-]", match.group("key"))[-1].lower()
        ):
            return match.group(0)  # prose, or a name in code (`self.token = token`)
        return _spliced(match, begin, end, value)

    return replace


def _spliced(match: re.Match[str], begin: int, end: int, value: str) -> str:
    """The match with the value at [begin, end) redacted."""
    text = match.string
    return text[match.start() : begin] + _redacted(value) + text[end : match.end()]


def _redacted(value: str) -> str:
    return value if holds_no_secret(value) else REDACTED
