from nla_audit.cli import main

raise SystemExit(main())
