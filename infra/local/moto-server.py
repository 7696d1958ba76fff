"""moto's server, with DynamoDB's atomicity.

DynamoDB applies each request atomically; moto's server runs requests on threads with no lock,
and a failed TransactWriteItems restores a copy of the tables taken when it began, undoing any
write that landed meanwhile. Under concurrent conditional writes (the checkpoint protocol's
claims and completions) that produces states DynamoDB never would. Here DynamoDB requests run
one at a time, as they take effect in DynamoDB; S3, SQS and Firehose stay concurrent.

Usage: python infra/local/moto-server.py -H 127.0.0.1 -p 5000 (the arguments of moto_server).
"""

import argparse
import os
import signal
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=int(os.environ.get("MOTO_PORT", 5000)))
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    app = DomainDispatcherApplication(create_backend_app)
    dynamodb = threading.Lock()

    def serialised(environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with dynamodb:
                # The whole answer is produced under the lock.
                return list(app(environ, start_response))
        return app(environ, start_response)

    run_simple(
        args.host,
        args.port,
        serialised,
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
