[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("Medformer.Tests")]
