"""Secrets written in every form the redactor knows, for the tests that plant them in
tasks and look for them on every surface."""

# (how it is written, the text, the secret in it)
WRITTEN_FORMS = [
    ("JSON", '{"password": "hunter2-json"}', "hunter2-json"),
    ("Python repr", "{'db_password': 'hunter2-repr'}", "hunter2-repr"),
    ("quoted key in text", 'config: "api_key": "sk-hunter2-quoted"', "sk-hunter2-quoted"),
    ("JSON inside a JSON string", '{\\"client_secret\\": \\"hunter2-esc\\"}', "hunter2-esc"),
    ("unquoted key: value", "password: hunter2-yaml", "hunter2-yaml"),
    ("YAML, quoted", 'db_password: "hunter 2 spaced"', "hunter 2 spaced"),
    ("shell export", "export DB_PASSWORD=hunter2-shell", "hunter2-shell"),
    ("INI", "password = hunter2-ini", "hunter2-ini"),
    ("keyword argument", 'connect(password="hunter2-kwarg")', "hunter2-kwarg"),
    ("Ruby hash", ':api_key => "hunter2-ruby"', "hunter2-ruby"),
    ("dotted property", "spring.datasource.password=hunter2-prop", "hunter2-prop"),
    ("camelCase key", 'clientSecret="hunter2-camel"', "hunter2-camel"),
    ("HTTP header", "X-Api-Key: hunter2-header", "hunter2-header"),
    ("basic credentials", "Authorization: Basic aHVudGVyMi1iYXNpYw==", "aHVudGVyMi1iYXNpYw=="),
    ("bearer credentials", "curl -H 'Authorization: Bearer hunter2bearer'", "hunter2bearer"),
    ("bearer in text", "send Bearer hunter2-bearer-text along", "hunter2-bearer-text"),
    ("CLI flag", "mysql --password hunter2-flag -h db", "hunter2-flag"),
    ("CLI flag with =", "psql --password=hunter2-flag-eq", "hunter2-flag-eq"),
    (
        "URL query",
        "https://x.example/cb?code=1&access_token=hunter2-query&state=2",
        "hunter2-query",
    ),
    (
        "SAS signature",
        "https://a.blob.core.windows.net/c?sv=2024&sig=hunter2%2Bsas",
        "hunter2%2Bsas",
    ),
    ("password in URL", "postgresql://app:hunter2-url@db:5432/app", "hunter2-url"),
    ("connection string", "Server=db;User Id=app;Password=hunter2-conn;", "hunter2-conn"),
    ("storage key", "DefaultEndpointsProtocol=https;AccountKey=aHVudGVyMg==;", "aHVudGVyMg=="),
    ("Service Bus key", "Endpoint=sb://ns/;SharedAccessKey=hunter2-sb=", "hunter2-sb="),
    ("XML", "<db><password>hunter2-xml</password></db>", "hunter2-xml"),
    ("netrc", "machine db login app password hunter2-netrc", "hunter2-netrc"),
    ("Kubernetes env", "env:\n  - name: API_TOKEN\n    value: hunter2-env", "hunter2-env"),
    ("AWS secret", "aws_secret_access_key = hunter2-aws", "hunter2-aws"),
    (
        "PEM key",
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIhunter2\n-----END EC PRIVATE KEY-----",
        "MHcCAQEEIhunter2",
    ),
    ("OpenAI key", "use sk-proj-Hunter2Hunter2Hunter2 today", "sk-proj-Hunter2Hunter2Hunter2"),
    (
        "GitHub token",
        "cloned with ghp_Hunter2Hunter2Hunter2Hunter2Hu",
        "ghp_Hunter2Hunter2Hunter2Hunter2Hu",
    ),
    ("JWT", "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.aHVudGVyMmp3dA", "aHVudGVyMmp3dA"),
    ("user:password flag", "curl -u admin:hunter2-curl https://x", "hunter2-curl"),
    (
        "JSON inside a log line",
        'request body: {"user": "bob", "password": "hunter2-embedded"} sent',
        "hunter2-embedded",
    ),
    (
        "escaped text in embedded JSON",
        '#call t {"content": "env:\\n  - name: API_TOKEN\\n    value: hunter2-escaped"}',
        "hunter2-escaped",
    ),
    ("environment in code", 'os.environ["DB_PASSWORD"] = "hunter2-environ"', "hunter2-environ"),
    ("setenv call", 'setenv("API_TOKEN", "hunter2-setenv")', "hunter2-setenv"),
    ("YAML block", "stringData:\n  password: |\n    hunter2-block\nkind: Secret", "hunter2-block"),
    ("cookie", "curl -H 'Cookie: session=hunter2-cookie; theme=dark'", "hunter2-cookie"),
    (
        "GitLab token",
        "git clone https://x/?t=glpat-Hunter2Hunter2Hunter2x",
        "glpat-Hunter2Hunter2Hunter2x",
    ),
    ("short name", "DB_HOST=db\nDB_PASS=hunter2-pass", "hunter2-pass"),
    (
        "other auth scheme",
        "Authorization: SharedKey acct:hunter2-sharedkey=",
        "acct:hunter2-sharedkey=",
    ),
    ("SQL", "CREATE USER app WITH PASSWORD 'hunter2-sql';", "hunter2-sql"),
    ("mysql flag", "mysql -h db -u root -phunter2-mysql payments", "hunter2-mysql"),
    (
        "ECS environment",
        '{"environment": [{"Name": "DB_PASSWORD", "Value": "hunter2-ecs"}]}',
        "hunter2-ecs",
    ),
    ("XML setting", '<property name="password" value="hunter2-xmlattr"/>', "hunter2-xmlattr"),
    (
        "signed URL",
        "https://cdn.example/v.mp4?expires=1714600000&signature=hunter2-signed",
        "hunter2-signed",
    ),
    # Last: a block with no end is redacted to the end of the text.
    ("PEM key cut short", "key: -----BEGIN PRIVATE KEY-----\nMIIEvhunter2", "MIIEvhunter2"),
]

SECRETS = [secret for _, _, secret in WRITTEN_FORMS]


def forms_text(forms: list[tuple[str, str, str]] = WRITTEN_FORMS) -> str:
    """The forms one per line, each introduced by its name."""
    return "\n".join(f"{name}: {text}" for name, text, _ in forms)


def leaked(text: str) -> list[str]:
    """The planted secrets found in `text`."""
    return [secret for secret in SECRETS if secret in text]
