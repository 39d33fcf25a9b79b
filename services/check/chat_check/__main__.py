from chat_check.cli import main

raise SystemExit(main())
