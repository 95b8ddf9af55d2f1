from photosense.cli import main

if __name__ == "__main__":  # not when a scan's worker process (spawn) imports it
    raise SystemExit(main())
