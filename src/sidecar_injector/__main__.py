from sidecar_injector.cli import main

raise SystemExit(main())
