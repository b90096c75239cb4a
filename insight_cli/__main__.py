from insight_cli.cli import main

main()
