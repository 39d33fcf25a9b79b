from chat_bots.app import main

raise SystemExit(main())
