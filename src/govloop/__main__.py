from govloop.cli import main

main()
