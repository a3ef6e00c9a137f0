"""`slmcnn app`: a local web app to look at builds, label tiles, review alerts and fine-tune.

    slmcnn app --db build.sqlite --data photos/ --model model.safetensors

Importing this package is cheap; FastAPI and uvicorn (the `app` extra) load when the app starts.
"""

import getpass
import secrets
from pathlib import Path

from slmcnn.errors import SettingsError

APP_OPTIONS = [
    ("--db", dict(action="append", default=[], help="a monitor's database (SQLite file or URL); may be repeated")),
    ("--data", dict(action="append", default=[], help="a folder of layer photos to label (and open folders inside); may be repeated")),
    ("--model", dict(help="model file (default: the one made current in the app, else the shipped model)")),
    ("--camera", dict(help="camera.json: straighten photos of --data folders, anomaly scores from its profile")),
    ("--labels", dict(help="the app's labels database (default: <db>.labels.sqlite beside the first --db)")),
    ("--host", dict(default="127.0.0.1", help="address to bind; anything but this machine needs --token")),
    ("--port", dict(type=int, default=8765)),
    ("--token", dict(help="access token (default: made up); required with a --host other than 127.0.0.1")),
    ("--user", dict(help="name stored with each label (default: the login name)")),
]  # fmt: skip


def cmd_app(args) -> int:
    """Serve the app until Ctrl-C."""
    try:
        import uvicorn

        from slmcnn.app.server import create_app, is_loopback
        from slmcnn.app.workspace import AppConfig
    except ImportError as exc:
        raise SettingsError(f"the app needs its extra: pip install 'slmcnn[app]' ({exc})") from None
    if not 1 <= args.port <= 65535:
        raise SettingsError(f"--port must be 1-65535 (got {args.port})")
    if not is_loopback(args.host) and not args.token:
        raise SettingsError("--host other than 127.0.0.1 needs --token, so only those who have it get in")
    config = AppConfig(
        [Path(d) if "://" not in d else d for d in args.db], [Path(d) for d in args.data],
        Path(args.model) if args.model else None, Path(args.camera) if args.camera else None,
        Path(args.labels) if args.labels else None, args.host, args.port,
        args.token or secrets.token_urlsafe(24), args.user or getpass.getuser(),
    )  # fmt: skip
    app = create_app(config)
    shown = args.host if ":" not in args.host else f"[{args.host}]"
    query = f"?token={config.token}" if not is_loopback(args.host) else ""
    print(
        f"slmcnn app: http://{shown}:{args.port}/{query}  (labels in {config.labels_path}; Ctrl-C to stop)", flush=True
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    app.state.workspace.finetune.stop()
    return 0
