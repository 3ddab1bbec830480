# Entry point: `snakemake --cores 8` (or `... all`) builds every table of the paper reproduction.
# The workflow itself lives in workflow/Snakefile; this file adds the default target, because the
# first rule of an included file never becomes Snakemake's default target.


include: "workflow/Snakefile"


rule default:
    default_target: True
    input:
        rules.all.input,
