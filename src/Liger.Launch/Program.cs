using Liger.Launch;

// Installed as a dotnet tool (liger-launch), --help is the first thing a user types.
if (args is ["--help"] or ["-h"])
{
    Console.WriteLine(LaunchOptions.Usage);
    return 0;
}
LaunchOptions options;
try
{
    options = LaunchOptions.Parse(args);
}
catch (ArgumentException e)
{
    Console.Error.WriteLine(e.Message);
    Console.Error.WriteLine(LaunchOptions.Usage);
    return 2;
}
return Launcher.Run(options, Console.Out);
