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
    "cookie",
)

# Values that hold no secret however they are labelled: flags, empty values,
# references to a secret kept elsewhere, and what redaction itself writes.
_NOT_SECRET = re.compile(
    r"(?i)(?:true|false|null|none|nil|~|\**|\[redacted\]"
    r"|\$\{?\w+\}?|\$\(.*|\{\{[^}]*\}\}|<[\w -]+>)"  # $VAR ${VAR} $(cmd) {{ .x }} <placeholder>
)
# A plain word after `name:` with more words following it is prose ("password: open
# the portal and reset it"), not an assignment.
_PLAIN_WORD = re.compile(r"[A-Za-z]+")
_PROSE_FOLLOWS = re.compile(r"[ \t]+[^\s#]")


def holds_no_secret(value: str) -> bool:
    return _NOT_SECRET.fullmatch(value) is not None


def names_a_reference(key: str) -> bool:
    """`existingSecret: payments-db` (a Helm chart convention) names the Kubernetes
    Secret that holds the value; the name itself is no secret."""
    return key.lower().startswith("existing")


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
        pieces += [match.string[last:begin], REDACTED]
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
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?P<secret>.*?)"
            r"(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
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
        "Slack webhook URL",
        "https://hooks.slack.com/services/T000/B000/s3cr3tvalue",
        re.compile(r"hooks\.slack\.com/services/(?P<secret>[\w/]+)"),
    ),
    SecretForm(
        "password in a URL",
        "postgres://app:s3cr3t-value@db:5432/app",
        re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]*:(?P<secret>[^/\s@'\"]+)@", re.IGNORECASE),
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
        # Not a uid:gid (`docker run -u 1000:1000`).
        re.compile(r"(?<!\S)(?:--user|-u)[ =]+[^\s:]+:(?P<secret>(?!\d+(?:\s|$))\S+)"),
    ),
)


def named_forms(names: str) -> tuple[SecretForm, ...]:
    """Forms that are a secret because of the name written beside them."""
    return (
        SecretForm(
            "XML element",
            "<password>s3cr3t-value</password>",
            re.compile(rf"(?i)<(?P<tag>[\w.-]*(?:{names}))>(?P<secret>[^<]+)</(?P=tag)>"),
        ),
        SecretForm(
            "netrc entry",
            "machine db login app password s3cr3t-value",
            re.compile(
                r"(?i)\b(?:login|user)[ \t]+\S+[ \t]+(?:password|passwd)[ \t]+(?P<secret>\S+)"
            ),
        ),
        SecretForm(
            "cookie header",
            "Cookie: session=s3cr3t-value; theme=dark",
            re.compile(r"(?i)\b(?:set-)?cookie:[ \t]*(?P<secret>[^\r\n\"']+)"),
        ),
        SecretForm(
            "YAML block value",
            "client_secret: |\n  s3cr3t-value\n  second line",
            re.compile(
                rf"(?im)^(?P<indent>[ \t]*)[\w.-]*(?:{names})[ \t]*:[ \t]*[|>][-+]?[ \t]*\r?\n"
                rf"(?P<secret>(?:(?P=indent)[ \t]+\S.*(?:\r?\n|$))+)"
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
        if (
            group == "bare"
            and not assigned
            and _PLAIN_WORD.fullmatch(value)
            and _PROSE_FOLLOWS.match(match.string, end)
        ):
            return match.group(0)
        return _spliced(match, begin, end, value)

    return replace


def _spliced(match: re.Match[str], begin: int, end: int, value: str) -> str:
    """The match with the value at [begin, end) redacted."""
    text = match.string
    return text[match.start() : begin] + _redacted(value) + text[end : match.end()]


def _redacted(value: str) -> str:
    return value if holds_no_secret(value) else REDACTED
