#!/usr/bin/env python3
"""tcp_proxy.py: forwards a local TCP port to a target, for network faults.

    tcp_proxy.py LISTEN_PORT TARGET_HOST TARGET_PORT

A test points a worker's DATABASE_URL at LISTEN_PORT and kills this process
to cut the worker off from PostgreSQL (every connection through it drops at
once, as in a network partition or a server crash), then starts it again on
the same port to end the outage. The server itself keeps running for the
other tests. Prints "listening" once the port is open.
"""
import socket
import sys
import threading


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(client, target):
    try:
        upstream = socket.create_connection(target)
    except OSError:
        client.close()
        return
    threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
    threading.Thread(target=pump, args=(upstream, client), daemon=True).start()


def main():
    port, host, tport = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", port))
    lsock.listen(64)
    print("listening", flush=True)
    while True:
        client, _ = lsock.accept()
        serve(client, (host, tport))


if __name__ == "__main__":
    main()
