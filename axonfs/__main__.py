from axonfs.cli import main

raise SystemExit(main())
