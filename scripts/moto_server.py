"""moto_server, single-threaded: requests are served one at a time, so a DynamoDB
TransactWriteItems is atomic against concurrent ones as in AWS (moto's threaded server
checks conditions and writes without isolation). Prints the URL on stdout like moto_server."""
import sys

from werkzeug.serving import run_simple
from moto.moto_server.threaded_moto_server import MotoRequestHandler
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
app = DomainDispatcherApplication(create_backend_app)
run_simple("127.0.0.1", port, app, threaded=False, use_reloader=False, request_handler=MotoRequestHandler)
