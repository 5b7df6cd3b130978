"""Send an audio file to the streaming endpoint as a live client would, and print what comes back
(one JSON line per update, then the summary).

    .venv/bin/python scripts/stream_file.py recording.wav [--url ws://localhost:3000/stream] [--realtime]

The file is read in 0.25-s chunks of 16-bit PCM at its own sampling rate (mono, or its channels
interleaved); `--realtime` paces them as a microphone would.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time

import numpy as np
import soundfile as sf
from httpx_ws import WebSocketDisconnect, connect_ws

CHUNK_S = 0.25


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--url", default="ws://localhost:3000/stream")
    parser.add_argument("--realtime", action="store_true", help="send at the pace of the audio")
    args = parser.parse_args(argv)
    with sf.SoundFile(args.file) as f, connect_ws(args.url) as ws:
        ws.send_text(json.dumps({"sampling_rate": f.samplerate, "format": "pcm16", "channels": f.channels}))
        print(json.dumps(ws.receive_json()), flush=True)

        def send() -> None:
            frames = round(CHUNK_S * f.samplerate)
            while len(chunk := f.read(frames, dtype="int16")):
                ws.send_bytes(np.ascontiguousarray(chunk, "<i2").tobytes())
                if args.realtime:
                    time.sleep(len(chunk) / f.samplerate)
            ws.send_text(json.dumps({"type": "end"}))

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        while True:
            try:
                message = ws.receive_json()
            except WebSocketDisconnect as closed:
                if closed.code != 1000:
                    print(f"stream_file: closed {closed.code}: {closed.reason}", file=sys.stderr)
                return 0 if closed.code == 1000 else 1
            print(json.dumps(message), flush=True)


if __name__ == "__main__":
    sys.exit(main())
