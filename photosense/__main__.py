from photosense.cli import main

raise SystemExit(main())
