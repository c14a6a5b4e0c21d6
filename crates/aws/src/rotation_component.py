"""ggprov.CertificateRotation: rotates this Greengrass core's certificate with a key born here.

ggprov asks on ggprov/rotation/<thing>/request {"request", "keyAlgorithm"}; this component makes
the key (it never leaves the core) and a CSR and answers on .../csr. ggprov signs it, registers the
certificate next to the old one and sends it on .../certificate; this component checks that it is
for its key, keeps the old files, installs the new ones where the nucleus reads them and restarts
the nucleus. Started again, it waits for the retained request to arrive over the new connection:
then it reports CONFIRMED with the new certificate's id on .../outcome. If the connection does not
come back in time, it puts the old files back, restarts again and reports FAILED. Every step is
recorded under the work directory per request, so a restart at any point resumes.
"""
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time

from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import QOS

THING = os.environ["AWS_IOT_THING_NAME"]
PREFIX = "ggprov/rotation/" + THING
CERT = pathlib.Path(os.environ["GGPROV_CERT_PATH"])
KEY = pathlib.Path(os.environ["GGPROV_KEY_PATH"])
STATE = pathlib.Path(os.environ.get("GGPROV_STATE_DIR", "rotation-state"))
RESTART = os.environ.get("GGPROV_RESTART_COMMAND", "systemctl restart greengrass")
CONFIRM_WAIT = int(os.environ.get("GGPROV_CONFIRM_WAIT_SECS", "300"))

ipc = GreengrassCoreIPCClientV2()
lock = threading.Lock()
heard = threading.Event()


def log(*parts):
    print("ggprov-rotation:", *parts, flush=True)


def openssl(*args, data=None):
    return subprocess.run(("openssl",) + args, input=data, check=True, capture_output=True).stdout


def publish(kind, body):
    ipc.publish_to_iot_core(topic_name=PREFIX + "/" + kind, qos=QOS.AT_LEAST_ONCE, payload=json.dumps(body).encode())


def folder(request):
    path = STATE / "".join(c for c in request if c.isalnum() or c in "-_")
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def write_private(path, data):
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def certificate_id(pem_path):
    return hashlib.sha256(openssl("x509", "-in", str(pem_path), "-outform", "DER")).hexdigest()


def public_key_of_certificate(pem):
    return openssl("x509", "-noout", "-pubkey", data=pem)


def public_key_of_key(path):
    return openssl("pkey", "-in", str(path), "-pubout")


def on_request(body):
    request = body["request"]
    here = folder(request)
    if (here / "done").exists():
        return
    if not (here / "csr.pem").exists():
        key = here / "new.key"
        if body.get("keyAlgorithm") == "RSA_2048":
            pem = openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048")
        else:
            pem = openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
        write_private(key, pem)
        write_private(here / "csr.pem", openssl("req", "-new", "-key", str(key), "-subj", "/CN=" + THING))
    publish("csr", {"request": request, "csr": (here / "csr.pem").read_text()})
    log("sent the CSR of request", request)


def on_certificate(body):
    request = body["request"]
    here = folder(request)
    if (here / "installed").exists() or (here / "done").exists() or not (here / "new.key").exists():
        return
    pem = body["certificatePem"].encode()
    if public_key_of_certificate(pem) != public_key_of_key(here / "new.key"):
        (here / "failed").write_text("the certificate ggprov sent is not for the key this core made")
        finish(request)
        return
    write_private(here / "new.crt", pem)
    shutil.copy2(CERT, here / "old.crt")
    shutil.copy2(KEY, here / "old.key")
    write_private(here / "installed", str(time.time()).encode())
    write_private(CERT, pem)
    write_private(KEY, (here / "new.key").read_bytes())
    log("installed the new certificate of request", request, "- restarting the nucleus")
    subprocess.run(RESTART, shell=True, check=False)


def finish(request):
    here = folder(request)
    failed = here / "failed"
    if failed.exists():
        publish("outcome", {"request": request, "status": "FAILED", "reason": failed.read_text()})
    else:
        publish("outcome", {"request": request, "status": "CONFIRMED", "certificateId": certificate_id(here / "new.crt")})
    write_private(here / "done", b"")
    log("reported request", request, "FAILED" if failed.exists() else "CONFIRMED")


def on_message(event):
    message = event.message
    try:
        body = json.loads(message.payload)
        heard.set()
        with lock:
            if message.topic_name.endswith("/request"):
                on_request(body)
            elif message.topic_name.endswith("/certificate"):
                on_certificate(body)
    except Exception as err:  # one bad message must not stop the component
        log("could not handle", message.topic_name, ":", err)


def resume():
    """After a restart: confirm or undo each installed certificate not reported yet."""
    for here in sorted(p for p in STATE.glob("*") if p.is_dir()):
        request = here.name
        if (here / "done").exists() or not (here / "installed").exists():
            continue
        if (here / "failed").exists():
            finish(request)
        elif heard.wait(CONFIRM_WAIT):
            finish(request)
        else:
            (here / "failed").write_text(
                "the core could not reach AWS IoT with the new certificate within %d s; it went back to the old one" % CONFIRM_WAIT
            )
            write_private(CERT, (here / "old.crt").read_bytes())
            write_private(KEY, (here / "old.key").read_bytes())
            log("no connection with the new certificate; restored the old one - restarting the nucleus")
            subprocess.run(RESTART, shell=True, check=False)


def main():
    STATE.mkdir(parents=True, exist_ok=True)
    os.chmod(STATE, 0o700)
    for leaf in ("request", "certificate"):
        ipc.subscribe_to_iot_core(topic_name=PREFIX + "/" + leaf, qos=QOS.AT_LEAST_ONCE, on_stream_event=on_message)
    resume()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
