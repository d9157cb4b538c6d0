"""MI's secure vault lookups against cmi's secret store: wso2:vault-lookup in
XPath (one- and three-argument forms), ${wso2-vault()} in Synapse
expressions, the CMI_SECRET_ environment fallback, an unknown alias, the
secrets file's permissions and format, and the HTTPS password from the
store."""
import json
import os
import shutil
import tempfile

import pki
from harness import Cmi, check, run_cmi

API = """<api xmlns="http://ws.apache.org/ns/synapse" name="Vault" context="/vault">
  <resource methods="GET" uri-template="/all">
    <inSequence>
      <property name="a" expression="wso2:vault-lookup('db_password')"/>
      <property name="b" expression="wso2:vault-lookup('CMI_TEST_PLAIN_ENV', 'ENV', 'false')"/>
      <variable name="c" expression="${wso2-vault('from_env')}"/>
      <property name="d" expression="concat('Basic ', base64Encode(concat('svc:', wso2:vault-lookup('api_key'))))"/>
      <payloadFactory media-type="json">
        <format>{"a":"$1","b":"$2","c":"$3","d":"$4"}</format>
        <args>
          <arg expression="get-property('a')"/>
          <arg expression="get-property('b')"/>
          <arg expression="${vars.c}"/>
          <arg expression="get-property('d')"/>
        </args>
      </payloadFactory>
      <respond/>
    </inSequence>
  </resource>
  <resource methods="GET" uri-template="/missing">
    <inSequence>
      <property name="x" expression="wso2:vault-lookup('no_such_alias')"/>
      <payloadFactory media-type="text"><format>reached</format></payloadFactory>
      <respond/>
    </inSequence>
  </resource>
  <resource methods="GET" uri-template="/encrypted">
    <inSequence>
      <property name="x" expression="wso2:vault-lookup('db_password', 'REG', 'true')"/>
      <respond/>
    </inSequence>
  </resource>
</api>
"""

SECRETS = """# cmi's secrets: alias = value
db_password = Sup3r-s3cret-DB
api_key=k-12345

"""


class Setup:
    def __init__(self, secrets=SECRETS, mode=0o600, extra=""):
        self.dir = tempfile.mkdtemp(prefix="cmi-vault-")
        os.makedirs(os.path.join(self.dir, "deploy", "api"))
        with open(os.path.join(self.dir, "deploy", "api", "vault.xml"), "w") as f:
            f.write(API)
        self.deploy = os.path.join(self.dir, "deploy")
        self.secrets = os.path.join(self.dir, "secrets")
        with open(self.secrets, "w") as f:
            f.write(secrets)
        os.chmod(self.secrets, mode)
        self.config = os.path.join(self.dir, "cmi.xml")
        with open(self.config, "w") as f:
            f.write('<cmi><secrets file="%s"/>%s</cmi>' % (self.secrets, extra))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)


ENV = {"CMI_TEST_PLAIN_ENV": "plain-env-value", "CMI_SECRET_from_env": "env-secret-value"}


def test_vault_lookups():
    with Setup() as s:
        cmi = Cmi(s.deploy, args=["--config", s.config], env=ENV).start()
        try:
            status, _, body = cmi.request("GET", "/vault/all")
            check(status == 200, "lookups: %s %r" % (status, body))
            got = json.loads(body)
            check(got == {"a": "Sup3r-s3cret-DB", "b": "plain-env-value", "c": "env-secret-value",
                          "d": "Basic c3ZjOmstMTIzNDU="}, "values: %r" % got)
            # An unknown alias fails the flow (MI would go on with the alias
            # itself as the value); the mediator after it never runs.
            status, _, body = cmi.request("GET", "/vault/missing")
            check(status == 500 and b"reached" not in body and b"no secret 'no_such_alias'" in body,
                  "unknown alias: %s %r" % (status, body))
            status, _, body = cmi.request("GET", "/vault/encrypted")
            check(status == 500 and b"encrypted values" in body, "encrypted: %s %r" % (status, body))
            log = cmi.log_text()
            for value in ("Sup3r-s3cret-DB", "k-12345", "env-secret-value"):
                check(value not in log, "a secret reached the log: %s" % value)
        finally:
            cmi.stop_clean()


def test_secrets_file_refused():
    cases = [
        (SECRETS, 0o644, "may be read by other users: chmod 600"),
        (SECRETS, 0o640, "may be read by other users: chmod 600"),
        ("db_password Sup3r-s3cret-DB\n", 0o600, ":1: expected 'alias = value'"),
        ("a = 1\na = 2\n", 0o600, ":2: the alias 'a' is given twice"),
    ]
    for text, mode, want in cases:
        with Setup(secrets=text, mode=mode) as s:
            rc, _, err = run_cmi(["run", s.deploy, "--http-port", "0", "--http-host", "127.0.0.1", "--config",
                                  s.config], timeout=20)
            check(rc == 1 and want in err, "%o %r: expected exit 1 naming %r, got %s: %s" % (mode, text, want, rc, err))
            check("Sup3r-s3cret-DB" not in err, "a secret value in the error: %s" % err)
    with Setup() as s:
        os.unlink(s.secrets)
        rc, _, err = run_cmi(["check", s.deploy, "--config", s.config], timeout=20)
        check(rc == 1 and "cannot read the secrets file" in err, "missing file: %s %s" % (rc, err))


def test_https_password_from_the_store():
    # A PKCS#12 keystore whose password is in the store, as MI's
    # deployment.toml refers to its keystore password through the vault.
    d = tempfile.mkdtemp(prefix="cmi-vault-tls-")
    try:
        pki.make_ca(d)
        pki.make_cert(d, "server")
        p12 = pki.pkcs12(d, "server", "Keyst0re-pw")
        secrets = "keystore_password = Keyst0re-pw\n"
        for ref, want in (("{wso2:vault-lookup('keystore_password')}", None),
                          ("{wso2:vault-lookup('nope')}", "HTTPS password: no secret 'nope'")):
            extra = '<https port="0" certificate="%s" password="%s"/>' % (p12, ref.replace("'", "&apos;"))
            with Setup(secrets=secrets, extra=extra) as s:
                if want is None:
                    cmi = Cmi(s.deploy, args=["--config", s.config], env=ENV).start()
                    try:
                        cmi.wait_log(r"listening on [^ ]+:(\d+) for HTTPS")
                        check("Keyst0re-pw" not in cmi.log_text(), "the keystore password reached the log")
                    finally:
                        cmi.stop_clean()
                else:
                    rc, _, err = run_cmi(["run", s.deploy, "--http-port", "0", "--http-host", "127.0.0.1",
                                          "--config", s.config], timeout=20)
                    check(rc == 1 and want in err, "unknown alias for the HTTPS password: %s %s" % (rc, err))
    finally:
        shutil.rmtree(d, ignore_errors=True)


ECHO_API = """<api xmlns="http://ws.apache.org/ns/synapse" name="EchoVault" context="/echovault">
  <resource methods="GET">
    <inSequence>
      <echo.echo configKey="EchoConn"><message>{wso2:vault-lookup('api_key')}</message>
        <overwriteBody>true</overwriteBody></echo.echo>
      <respond/>
    </inSequence>
  </resource>
</api>
"""


def test_connector_parameters_from_the_store():
    # {wso2:vault-lookup('alias')} as a connector parameter: a secret row
    # (the token), any other row (the name), an operation's expression row
    # (echo's message), each read once at load.
    conn = ("<localEntry xmlns=\"http://ws.apache.org/ns/synapse\" key=\"EchoConn\"><echo.init>"
            "<name>{wso2:vault-lookup('conn_name')}</name><token>{wso2:vault-lookup('db_password')}</token>"
            "</echo.init></localEntry>")
    with Setup(secrets=SECRETS + "conn_name = VaultConn\n") as s:
        os.makedirs(os.path.join(s.deploy, "local-entries"))
        with open(os.path.join(s.deploy, "local-entries", "conn.xml"), "w") as f:
            f.write(conn)
        with open(os.path.join(s.deploy, "api", "echo.xml"), "w") as f:
            f.write(ECHO_API)
        cmi = Cmi(s.deploy, args=["--config", s.config], env=ENV).start()
        try:
            cmi.wait_log(r"connection VaultConn started: .* token set")
            status, _, body = cmi.request("GET", "/echovault")
            check(status == 200 and json.loads(body)["echo"] == "k-12345", "echo of the secret: %s %r" % (status, body))
            check("Sup3r-s3cret-DB" not in cmi.log_text(), "the token reached the log")
        finally:
            cmi.stop_clean()
