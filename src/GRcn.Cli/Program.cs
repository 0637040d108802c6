// Entry point of the grcn command.
return GRcn.Cli.GrcnApp.Run(args);
