from maintainer.cli.main import main

main()
