from infra.console.server import main

main()
