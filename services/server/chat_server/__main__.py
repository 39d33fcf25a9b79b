from chat_server.app import main

raise SystemExit(main())
