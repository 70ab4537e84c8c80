"""One module per ``fairl`` command (the TRL ``cli/commands`` shape): each has ``add_parser(sub)`` (its arguments
and help) and ``run(args) -> exit status`` (parse → one library call → print). ``fairl_ray.cli`` lists them."""
