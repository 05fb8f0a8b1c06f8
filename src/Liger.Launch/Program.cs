using Liger.Launch;

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
