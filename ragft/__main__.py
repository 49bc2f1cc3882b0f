from ragft.cli import app

app(prog_name="ragft")
