from judge_rl.cli import main

raise SystemExit(main())
