"""`slmcnn app`: a local web app to look at builds, label tiles, review alerts and fine-tune.

    slmcnn app --db build.sqlite --data photos/ --model model.safetensors

Importing this package is cheap; FastAPI and uvicorn (the `app` extra) load when the app starts.
"""

import getpass
import secrets
from pathlib import Path

from slmcnn.errors import SettingsError


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
        Path(args.lessons) if args.lessons else None,
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
