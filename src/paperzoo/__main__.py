from paperzoo.cli import main

raise SystemExit(main())
