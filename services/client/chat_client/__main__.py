from chat_client.app import main

raise SystemExit(main())
