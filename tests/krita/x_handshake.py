"""What an X server answers a client's connection setup on DISPLAY :N, without auth, as Krita's libxcb
would ask it: 'accepted', 'refused: <the server's reason>', 'asks for authentication: ...' or the
socket error. run_krita.sh records it when Krita could not connect to its display (the sockets
connect, so the question is what the server said).  python3 x_handshake.py N"""
import socket
import struct
import sys


def handshake(address, timeout=5.0):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    try:
        s.connect(address)
        s.sendall(struct.pack("<BxHHHHxx", 0x6C, 11, 0, 0, 0))  # little-endian, protocol 11.0, no auth
        head = s.recv(8)
        if len(head) < 8:
            return "closed after %d bytes" % len(head)
        status, reason_len, _major, _minor, extra = struct.unpack("<BBHHH", head)
        if status == 1:
            return "accepted"
        body = b""
        while len(body) < 4 * extra:
            chunk = s.recv(4 * extra - len(body))
            if not chunk:
                break
            body += chunk
        text = body[:reason_len or len(body)].decode("latin-1").strip("\0 ")
        return ("refused: " if status == 0 else "asks for authentication: ") + text
    except OSError as e:
        return "socket error: %s" % e
    finally:
        s.close()


if __name__ == "__main__":
    n = sys.argv[1]
    for name in ("\0/tmp/.X11-unix/X" + n, "/tmp/.X11-unix/X" + n):
        print(repr(name), handshake(name))
