"""Learning the rules of Sudoku (OptNet setup): puzzle generator and QP layer formulation."""
