"""Keys and certificates the TLS tests make for themselves (openssl's command
line, EC P-256 keys: quick, also under valgrind)."""
import os
import subprocess


def _ossl(*args, cwd):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args), p.stderr))
    return p.stdout


def make_ca(d, name="ca", cn="cmi test CA"):
    _ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
          "-keyout", name + ".key", "-out", name + ".pem", "-days", "2", "-subj", "/CN=" + cn, cwd=d)
    return os.path.join(d, name + ".pem")


def make_cert(d, name, ca="ca", cn="localhost", serial=1, days=2, client=False, not_after=None,
              names="DNS:localhost,IP:127.0.0.1"):
    """name.key and name.pem signed by ca; a server certificate for names
    (localhost and 127.0.0.1), or a client one.  not_after (YYMMDDHHMMSSZ)
    makes it expire then (an expired certificate: a date in the past)."""
    _ossl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
          "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn + "/O=cmi tests", cwd=d)
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        if client:
            f.write("extendedKeyUsage=clientAuth\n")
        else:
            f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth\n" % names)
    if not_after is not None:
        # `openssl ca` is the command line's way to set both dates.
        _ossl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
              "-set_serial", str(serial), "-out", name + ".pem", "-extfile", ext, "-days", "1", cwd=d)
        _backdate(d, name, ca, serial, ext, not_after)
    else:
        _ossl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
              "-set_serial", str(serial), "-out", name + ".pem", "-days", str(days), "-extfile", ext, cwd=d)
    return os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")


def _backdate(d, name, ca, serial, ext, not_after):
    """Re-signs name.pem with validity ending at not_after, through a
    throwaway `openssl ca` set-up."""
    db = os.path.join(d, "cadb-" + name)
    os.makedirs(db, exist_ok=True)
    open(os.path.join(db, "index.txt"), "w").close()
    with open(os.path.join(db, "serial"), "w") as f:
        f.write("%04X\n" % (serial + 0x100))
    conf = os.path.join(db, "ca.cnf")
    with open(conf, "w") as f:
        f.write("[ca]\ndefault_ca=c\n[c]\ndir=%s\ndatabase=$dir/index.txt\nnew_certs_dir=$dir\nserial=$dir/serial\n"
                "default_md=sha256\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\norganizationName=optional\n"
                % db)
    _ossl("ca", "-batch", "-config", conf, "-in", name + ".csr", "-cert", ca + ".pem", "-keyfile", ca + ".key",
          "-out", name + ".pem", "-startdate", "200101000000Z", "-enddate", not_after, "-extfile", ext,
          "-notext", cwd=d)


def pkcs12(d, name, password, legacy=False):
    out = os.path.join(d, name + (".legacy" if legacy else "") + ".p12")
    args = ["pkcs12", "-export", "-in", name + ".pem", "-inkey", name + ".key", "-out", out,
            "-passout", "pass:" + password]
    if legacy:
        args += ["-legacy"]
    _ossl(*args, cwd=d)
    return out


def pkcs12_trust(d, name, password):
    """name.pem's certificates alone in a PKCS#12 file (a trust store)."""
    out = os.path.join(d, name + ".trust.p12")
    _ossl("pkcs12", "-export", "-nokeys", "-in", name + ".pem", "-out", out, "-passout", "pass:" + password, cwd=d)
    return out


def serial_of(pem_text):
    """The serial number openssl prints for a PEM certificate ("serial=01")."""
    p = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem_text, capture_output=True, text=True,
                       timeout=30)
    return p.stdout.strip()
