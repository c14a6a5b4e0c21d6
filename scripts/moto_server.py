"""moto_server, single-threaded: requests are served one at a time, so a DynamoDB
TransactWriteItems is atomic against concurrent ones as in AWS (moto's threaded server
checks conditions and writes without isolation). Prints the URL on stdout like moto_server.

One moto defect is mended here: with a policy attached to a thing group (AWS IoT policy
inheritance), moto's DeleteCertificate looks for the certificate id on every policy target and
fails with a 500 on the group; AWS deletes the certificate. The check below looks at
certificate targets only, as AWS does."""
import sys

from werkzeug.serving import run_simple
from moto.moto_server.threaded_moto_server import MotoRequestHandler
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from moto.iot.exceptions import CertificateStateException, DeleteConflictException
from moto.iot.models import IoTBackend


def _validation_delete(self, cert, force_delete=False):
    if cert.status == "ACTIVE":
        raise CertificateStateException("Certificate must be deactivated (not ACTIVE) before deletion.", cert.certificate_id)
    if any(k[0] == cert.arn for k in self.principal_things):
        raise DeleteConflictException(f"Things must be detached before deletion (arn: {cert.arn})")
    if any(k[0] == cert.arn for k in self.principal_policies) and not force_delete:
        raise DeleteConflictException(f"Certificate policies must be detached before deletion (arn: {cert.arn})")


IoTBackend._validation_delete = _validation_delete

port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
app = DomainDispatcherApplication(create_backend_app)
run_simple("127.0.0.1", port, app, threaded=False, use_reloader=False, request_handler=MotoRequestHandler)
