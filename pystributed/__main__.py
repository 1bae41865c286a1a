from pystributed.cli import main

raise SystemExit(main())
